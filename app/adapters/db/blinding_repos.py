"""Unblindings, the notification outbox, study lock and key rotation (see
app.services.blinding). No row written here holds an arm."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.adapters.crypto.envelope import unwrap_dek, wrap_dek
from app.adapters.crypto.user_secrets import open_user_secret, seal_user_secret
from app.adapters.db import memo
from app.adapters.db.keystore import KeyService
from app.adapters.db.models import OutboxRow, StudyKeyRow, StudyRow, UnblindingRow
from app.adapters.db.models_web import WebUserRow
from app.domain.subjects import Subject
from app.services.ports import RewrappedKey


class SqlBlindingRepository:
    def __init__(self, session: Session, keys: KeyService) -> None:
        self._session = session
        self._keys = keys

    def _study_id(self, slug: str) -> int:
        return memo.study_id(self._session, slug)

    def locked(self, study: str, *, hold: bool = False) -> tuple[datetime, str] | None:
        state = None if hold else memo.states(self._session).get(study)
        if state is not None:
            # Read with the study's row at the start of this transaction.
            if state.locked_at is None:
                return None
            return state.locked_at, state.locked_by or ""
        held = memo.held(self._session)
        if hold and study in held:
            return held[study]  # share-locked already in this transaction: it cannot change
        query = select(StudyRow.locked_at, StudyRow.locked_by).where(StudyRow.slug == study)
        if hold:
            query = query.with_for_update(read=True)
        row = self._session.execute(query).first()
        found = (
            None if row is None or row.locked_at is None else (row.locked_at, row.locked_by or "")
        )
        if hold:
            held[study] = found
        return found

    def lock(self, study: str, at: datetime, by: str) -> bool:
        # Conditional: of two racing locks exactly one changes the row.
        memo.forget_study_state(self._session, study)
        result = self._session.execute(
            update(StudyRow)
            .where(StudyRow.slug == study, StudyRow.locked_at.is_(None))
            .values(locked_at=at, locked_by=by)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def add_unblinding(
        self, subject: Subject, by: str, role: str, reason: str, at: datetime
    ) -> int:
        row = UnblindingRow(
            subject_pk=subject.pk, unblinded_by=by, role=role, reason=reason, unblinded_at=at
        )
        self._session.add(row)
        self._session.flush()
        return row.id

    def notify(self, study: str, kind: str, payload: Mapping[str, Any], at: datetime) -> None:
        self._session.add(
            OutboxRow(
                study_id=self._study_id(study),
                kind=kind,
                payload=dict(payload),
                created_at=at,
                sent_at=None,
            )
        )
        self._session.flush()

    def rewrap_deks(self, new_kek_id: str) -> list[RewrappedKey]:
        new_kek = self._keys.kek(new_kek_id)
        rows = self._session.execute(
            select(StudyKeyRow, StudyRow.slug)
            .join(StudyRow, StudyRow.id == StudyKeyRow.study_id)
            .order_by(StudyRow.slug, StudyKeyRow.version)
            .with_for_update(of=StudyKeyRow)
        ).all()
        done: list[RewrappedKey] = []
        for row, slug in rows:
            dek = unwrap_dek(self._keys.kek(row.kek_id), row.kek_id, slug, row.wrapped_dek)
            done.append(RewrappedKey(slug, row.version, row.kek_id))
            row.wrapped_dek = wrap_dek(new_kek, new_kek_id, slug, dek)
            row.kek_id = new_kek_id
        self._session.flush()
        return done

    def reseal_user_secrets(self, new_kek_id: str) -> int:
        """Seal every web user's second-factor secret (sealed under a KEK itself, not a
        study key) again under the KEK `new_kek_id`; returns how many."""
        new_kek = self._keys.kek(new_kek_id)
        rows = self._session.scalars(
            select(WebUserRow)
            .where(
                WebUserRow.totp_secret_sealed.is_not(None),
                WebUserRow.totp_kek_id.is_not(None),
                WebUserRow.totp_kek_id != new_kek_id,
            )
            .order_by(WebUserRow.id)
            .with_for_update()
        ).all()
        for row in rows:
            assert row.totp_secret_sealed is not None
            assert row.totp_kek_id is not None
            secret = open_user_secret(
                self._keys.kek(row.totp_kek_id),
                row.totp_kek_id,
                row.user_id,
                row.totp_secret_sealed,
            )
            row.totp_secret_sealed = seal_user_secret(new_kek, new_kek_id, row.user_id, secret)
            row.totp_kek_id = new_kek_id
        self._session.flush()
        return len(rows)
