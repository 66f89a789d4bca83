"""Unblindings, the notification outbox, study lock, key rotation and the re-sealing of
legacy envelopes (see app.services.blinding). No row written here holds an arm."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.adapters.crypto.envelope import StudyCipher, stratum_size, unwrap_dek, wrap_dek
from app.adapters.crypto.user_secrets import open_user_secret, seal_user_secret
from app.adapters.db import memo
from app.adapters.db.keystore import KeyService
from app.adapters.db.models import (
    AllocationRow,
    KitRow,
    OutboxRow,
    RandomizationListRow,
    StratumRow,
    StudyKeyRow,
    StudyRow,
    SubjectRow,
    UnblindingRow,
)
from app.adapters.db.models_web import WebUserRow
from app.adapters.db.repositories import DEFINITION_KIND, SqlStudyRepository
from app.adapters.db.supply_repos import KIT_TYPE_KIND
from app.domain.sealed import LEGACY_ENVELOPE_TAG, Sealed
from app.domain.subjects import Subject
from app.services.ports import ResealedStudy, RewrappedKey


def _legacy(column: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
    """The envelope in `column` is a legacy one (IWRS1, unpadded)."""
    return func.substr(column, 1, len(LEGACY_ENVELOPE_TAG)) == LEGACY_ENVELOPE_TAG


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

    def reseal_legacy(self) -> list[ResealedStudy]:
        """Every legacy envelope of every study opened and sealed again, padded (each under
        the study's active data key, which a KEK rotation leaves unchanged)."""
        done: list[ResealedStudy] = []
        studies = self._session.scalars(
            select(StudyRow).order_by(StudyRow.slug).with_for_update()
        ).all()
        for study in studies:
            cipher = self._keys.cipher(self._session, study.id, study.slug)
            counts = {
                "study.definition_sealed": self._reseal_definition(study, cipher),
                "randomization_list.seed_sealed": self._reseal_seeds(study.id, cipher),
                "stratum.slots_sealed": self._reseal_strata(study, cipher),
                **self._reseal_allocations(study.id, cipher),
                "kit.kit_type_sealed": self._reseal_kit_types(study.id, cipher),
            }
            if any(counts.values()):
                done.append(ResealedStudy(study.slug, counts))
        self._session.flush()
        return done

    def _reseal_definition(self, study: StudyRow, cipher: StudyCipher) -> int:
        sealed = Sealed(study.definition_sealed)
        if not sealed.legacy:
            return 0
        raw = cipher.open(DEFINITION_KIND, study.slug, sealed)
        study.definition_sealed = cipher.seal(DEFINITION_KIND, study.slug, raw).envelope
        self._session.flush()
        return 1

    def _reseal_seeds(self, study_id: int, cipher: StudyCipher) -> int:
        rows = self._session.scalars(
            select(RandomizationListRow)
            .where(
                RandomizationListRow.study_id == study_id,
                _legacy(RandomizationListRow.seed_sealed),
            )
            .order_by(RandomizationListRow.id)
            .with_for_update()
        ).all()
        for row in rows:
            assert row.seed_sealed is not None
            record = f"{row.mode}:v{row.version}"
            seed = cipher.open("seed", record, Sealed(row.seed_sealed))
            row.seed_sealed = cipher.seal("seed", record, seed).envelope
        return len(rows)

    def _reseal_strata(self, study: StudyRow, cipher: StudyCipher) -> int:
        rows = self._session.scalars(
            select(StratumRow)
            .join(RandomizationListRow, RandomizationListRow.id == StratumRow.list_id)
            .where(RandomizationListRow.study_id == study.id, _legacy(StratumRow.slots_sealed))
            .order_by(StratumRow.id)
            .with_for_update(of=StratumRow)
        ).all()
        if not rows:
            return 0
        stored = SqlStudyRepository(self._session, self._keys).get(study.slug)
        assert stored is not None
        longest_arm = stored.study.longest_arm_bytes()
        for row in rows:
            record = f"{row.list_id}:{row.key}"
            slots = cipher.open("stratum", record, Sealed(row.slots_sealed))
            row.slots_sealed = cipher.seal(
                "stratum", record, slots, size=stratum_size(row.length, longest_arm)
            ).envelope
        return len(rows)

    def _reseal_allocations(self, study_id: int, cipher: StudyCipher) -> dict[str, int]:
        counts = {"allocation.arm_sealed": 0, "allocation.trace_sealed": 0}
        rows = self._session.execute(
            select(AllocationRow, SubjectRow.subject_code)
            .join(SubjectRow, SubjectRow.id == AllocationRow.subject_pk)
            .where(
                SubjectRow.study_id == study_id,
                _legacy(AllocationRow.arm_sealed) | _legacy(AllocationRow.trace_sealed),
            )
            .order_by(AllocationRow.id)
            .with_for_update(of=AllocationRow)
        ).all()
        for row, code in rows:
            if Sealed(row.arm_sealed).legacy:
                arm = cipher.open("allocation", code, Sealed(row.arm_sealed))
                row.arm_sealed = cipher.seal("allocation", code, arm).envelope
                counts["allocation.arm_sealed"] += 1
            if row.trace_sealed is not None and Sealed(row.trace_sealed).legacy:
                trace = cipher.open("trace", code, Sealed(row.trace_sealed))
                row.trace_sealed = cipher.seal("trace", code, trace).envelope
                counts["allocation.trace_sealed"] += 1
        return counts

    def _reseal_kit_types(self, study_id: int, cipher: StudyCipher) -> int:
        # A kit list is about 100,000 rows: read and written as plain rows, not objects.
        rows = self._session.execute(
            select(KitRow.id, KitRow.kit_number, KitRow.kit_type_sealed)
            .where(KitRow.study_id == study_id, _legacy(KitRow.kit_type_sealed))
            .order_by(KitRow.id)
            .with_for_update()
        ).all()
        if not rows:
            return 0
        values = [
            {
                "kit_id": kit_id,
                "sealed": cipher.seal(
                    KIT_TYPE_KIND,
                    number,
                    cipher.open(KIT_TYPE_KIND, number, Sealed(sealed)),
                ).envelope,
            }
            for kit_id, number, sealed in rows
        ]
        self._session.connection().execute(
            update(KitRow.__table__)  # type: ignore[arg-type]
            .where(KitRow.__table__.c.id == bindparam("kit_id"))
            .values(kit_type_sealed=bindparam("sealed")),
            values,
        )
        return len(rows)
