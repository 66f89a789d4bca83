"""Repositories of the web pages' users (with their grants) and sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.adapters.crypto.user_secrets import open_user_secret, seal_user_secret
from app.adapters.db.access_repos import read_grants, write_grants
from app.adapters.db.keystore import KeyService
from app.adapters.db.models_web import WebSessionRow, WebUserGrantRow, WebUserRow
from app.domain.roles import Role
from app.domain.users import SessionState, WebSession, WebUser


class SqlUserRepository:
    def __init__(self, session: Session, keys: KeyService) -> None:
        self._session = session
        self._keys = keys

    def _to_domain(self, row: WebUserRow) -> WebUser:
        studies, sites = read_grants(
            self._session, WebUserGrantRow, WebUserGrantRow.user_pk == row.id
        )
        return WebUser(
            user_id=row.user_id,
            email=row.email,
            role=Role(row.role),
            studies=None if row.all_studies else studies,
            sites=sites,
            locale=row.locale,
            password_hash=row.password_hash,
            enrolment_hash=row.enrolment_hash,
            enrolment_expires_at=row.enrolment_expires_at,
            totp_enrolled=row.totp_enrolled,
            totp_last_step=row.totp_last_step,
            disabled_at=row.disabled_at,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )

    def _row(self, user_id: str, for_update: bool = False) -> WebUserRow | None:
        query = select(WebUserRow).where(WebUserRow.user_id == user_id)
        if for_update:
            query = query.with_for_update()
        return self._session.scalars(query).first()

    def add(self, user: WebUser) -> None:
        assert user.created_at is not None
        row = WebUserRow(
            user_id=user.user_id,
            email=user.email,
            role=user.role.value,
            all_studies=user.studies is None,
            locale=user.locale,
            password_hash=user.password_hash,
            enrolment_hash=user.enrolment_hash,
            enrolment_expires_at=user.enrolment_expires_at,
            totp_enrolled=user.totp_enrolled,
            totp_last_step=user.totp_last_step,
            disabled_at=user.disabled_at,
            created_at=user.created_at,
        )
        self._session.add(row)
        self._session.flush()
        write_grants(
            self._session,
            user.studies or (),
            user.sites,
            lambda study_id, site_id: WebUserGrantRow(
                user_pk=row.id, study_id=study_id, site_id=site_id
            ),
        )

    def get(self, user_id: str, *, for_update: bool = False) -> WebUser | None:
        row = self._row(user_id, for_update)
        return None if row is None else self._to_domain(row)

    def by_email(self, email: str, *, for_update: bool = False) -> WebUser | None:
        query = select(WebUserRow).where(WebUserRow.email == email)
        if for_update:
            query = query.with_for_update()
        row = self._session.scalars(query).first()
        return None if row is None else self._to_domain(row)

    def list(self) -> list[WebUser]:
        rows = self._session.scalars(select(WebUserRow).order_by(WebUserRow.id)).all()
        return [self._to_domain(r) for r in rows]

    def save(self, user: WebUser) -> None:
        row = self._row(user.user_id)
        assert row is not None
        row.locale = user.locale
        row.password_hash = user.password_hash
        row.enrolment_hash = user.enrolment_hash
        row.enrolment_expires_at = user.enrolment_expires_at
        row.totp_enrolled = user.totp_enrolled
        row.totp_last_step = user.totp_last_step
        row.disabled_at = user.disabled_at
        row.last_login_at = user.last_login_at
        self._session.flush()

    def totp_secret(self, user_id: str) -> str | None:
        row = self._row(user_id)
        if row is None or row.totp_secret_sealed is None or row.totp_kek_id is None:
            return None
        secret = open_user_secret(
            self._keys.kek(row.totp_kek_id), row.totp_kek_id, user_id, row.totp_secret_sealed
        )
        if row.totp_kek_id != self._keys.keyring().active_kid:
            self.set_totp_secret(user_id, secret)
        return secret

    def set_totp_secret(self, user_id: str, secret: str | None) -> None:
        row = self._row(user_id)
        assert row is not None
        if secret is None:
            row.totp_secret_sealed, row.totp_kek_id = None, None
        else:
            keyring = self._keys.keyring()
            row.totp_kek_id = keyring.active_kid
            row.totp_secret_sealed = seal_user_secret(
                keyring.active_kek, keyring.active_kid, user_id, secret
            )
        self._session.flush()


class SqlWebSessionRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _user_pk(self, user_id: str) -> int:
        pk = self._session.scalar(select(WebUserRow.id).where(WebUserRow.user_id == user_id))
        assert pk is not None
        return pk

    def add(self, session: WebSession) -> None:
        self._session.add(
            WebSessionRow(
                token_hash=session.token_hash,
                user_pk=self._user_pk(session.user_id),
                state=session.state.value,
                csrf_token=session.csrf_token,
                created_at=session.created_at,
                last_seen_at=session.last_seen_at,
                authenticated_at=session.authenticated_at,
                ended_at=session.ended_at,
            )
        )
        self._session.flush()

    def get(self, token_hash: str, *, for_update: bool = False) -> WebSession | None:
        query = (
            select(WebSessionRow, WebUserRow.user_id)
            .join(WebUserRow, WebUserRow.id == WebSessionRow.user_pk)
            .where(WebSessionRow.token_hash == token_hash)
        )
        if for_update:
            query = query.with_for_update(of=WebSessionRow)
        found = self._session.execute(query).first()
        if found is None:
            return None
        row, user_id = found
        return WebSession(
            token_hash=row.token_hash,
            user_id=user_id,
            state=SessionState(row.state),
            csrf_token=row.csrf_token,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            authenticated_at=row.authenticated_at,
            ended_at=row.ended_at,
        )

    def save(self, session: WebSession) -> None:
        row = self._session.get(WebSessionRow, session.token_hash)
        assert row is not None
        row.state = session.state.value
        row.last_seen_at = session.last_seen_at
        row.authenticated_at = session.authenticated_at
        row.ended_at = session.ended_at
        self._session.flush()

    def end_all(self, user_id: str, at: datetime) -> int:
        result = self._session.execute(
            update(WebSessionRow)
            .where(
                WebSessionRow.user_pk == self._user_pk(user_id),
                WebSessionRow.ended_at.is_(None),
            )
            .values(ended_at=at)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
