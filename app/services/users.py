"""Human users of the web pages: create, list, disable, reset; enrol, log in, confirm both
factors again, resolve and end sessions (rules in app.domain.users).

Every change is audited in the same transaction: in each granted study's chain (the system
chain for administrators and for e-mail addresses nobody has), so a study's auditor sees
who entered it. No event, log line or error carries a password, a code or a TOTP secret.

A session's token is renewed at each privilege change: the second factor (at login and at
the end of enrolment) ends the pending session and issues a new token; setting a password
(enrolment) ends every earlier session of the user. A token seen or planted before the
change is worth nothing after it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from app.domain.access import Principal
from app.domain.audit import Actor, AuditEvent
from app.domain.clients import Throttled, ThrottleState, after_failure, failure_delay
from app.domain.errors import NotFound
from app.domain.roles import Role
from app.domain.users import (
    ENROLMENT_VALIDITY,
    LOCALES,
    InvalidUserRequest,
    LoginFailed,
    SessionInvalid,
    SessionState,
    WebSession,
    WebUser,
    check_password,
    normalize_email,
    throttle_key,
)
from app.services.ports import SecretHasher, UnitOfWork

# An enrolment code: 16 characters of an alphabet without look-alikes (80 bits), in groups.
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class SecondFactor(Protocol):
    """TOTP (RFC 6238), implemented by an adapter."""

    def new_secret(self) -> str: ...

    def provisioning_uri(self, secret: str, email: str) -> str: ...

    def verify(self, secret: str, code: str, now: datetime, after_step: int) -> int | None:
        """The time step `code` matches (within one step of `now`, and after `after_step`),
        or None."""


class UserRepository(Protocol):
    def add(self, user: WebUser) -> None: ...

    def get(self, user_id: str, *, for_update: bool = False) -> WebUser | None: ...

    def by_email(self, email: str, *, for_update: bool = False) -> WebUser | None: ...

    def list(self) -> list[WebUser]: ...

    def save(self, user: WebUser) -> None:
        """Store the user's mutable fields (password, enrolment, TOTP state, locale...)."""

    def totp_secret(self, user_id: str) -> str | None:
        """The user's TOTP secret, opened (it is sealed in the database)."""

    def set_totp_secret(self, user_id: str, secret: str | None) -> None: ...


class WebSessionRepository(Protocol):
    def add(self, session: WebSession) -> None: ...

    def get(self, token_hash: str, *, for_update: bool = False) -> WebSession | None: ...

    def save(self, session: WebSession) -> None: ...

    def end_all(self, user_id: str, at: datetime) -> int:
        """End every open session of the user; how many were open."""


class UserUnitOfWork(UnitOfWork, Protocol):
    @property
    def users(self) -> UserRepository: ...

    @property
    def web_sessions(self) -> WebSessionRepository: ...


@dataclass(frozen=True, slots=True)
class IssuedEnrolment:
    user: WebUser
    code: str = field(repr=False)  # shown once, stored only as a hash


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str = field(repr=False)  # for the cookie only
    session: WebSession


@dataclass(frozen=True, slots=True)
class Enrolment:
    session: NewSession
    secret: str = field(repr=False)  # the TOTP secret, shown to the user to enrol
    uri: str = field(repr=False)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_session(user: WebUser, state: SessionState, now: datetime) -> NewSession:
    token = secrets.token_urlsafe(32)
    session = WebSession(
        token_hash=token_hash(token),
        user_id=user.user_id,
        state=state,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        authenticated_at=now if state is SessionState.ACTIVE else None,
    )
    return NewSession(token, session)


def _renewed(uow: UserUnitOfWork, old: WebSession, user: WebUser, now: datetime) -> NewSession:
    """The session after a privilege change: a new token, active, proved `now`; the old token
    ends, so a token that was known (or planted) before the change is worth nothing after it
    (session fixation)."""
    uow.web_sessions.save(replace(old, ended_at=now))
    new = _new_session(user, SessionState.ACTIVE, now)
    uow.web_sessions.add(new.session)
    return new


def _enrolment_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _canonical_code(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def _user_events(
    user: WebUser,
    action: str,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> list[AuditEvent]:
    studies: Sequence[str | None] = sorted(user.studies) if user.studies is not None else [None]
    return [
        AuditEvent(
            action=action,
            entity_type="user",
            entity_id=user.user_id,
            study=study,
            after=after,
            reason=reason,
        )
        for study in studies
    ]


def _record_all(uow: UnitOfWork, events: Sequence[AuditEvent]) -> None:
    for event in events:
        uow.record(event)


def _act_as(uow: UnitOfWork, user: WebUser) -> None:
    """From here on the transaction's events are the user's own."""
    uow.actor = Actor(user.actor_id, user.role.value)


# --- administration (the command line) ------------------------------------------------------


def _site_grants(
    uow: UnitOfWork, role: Role, studies: Sequence[str], sites: Sequence[str]
) -> dict[str, frozenset[str]]:
    if role is not Role.ADMIN and not studies:
        raise InvalidUserRequest(f"a {role.value} needs at least one --study")
    if role is Role.EDC:
        raise InvalidUserRequest("edc is a role of systems; create an API client instead")
    if sites and not role.site_scoped:
        raise InvalidUserRequest(f"a {role.value} is not scoped to sites; omit --site")
    if role.site_scoped and not sites:
        raise InvalidUserRequest(f"a {role.value} needs at least one --site")
    grants: dict[str, frozenset[str]] = {}
    for slug in dict.fromkeys(studies):
        stored = uow.studies.get(slug)
        if stored is None:
            raise InvalidUserRequest(f"unknown study {slug!r}")
        codes = {s.code for s in stored.study.sites}
        grants[slug] = frozenset(s for s in sites if s in codes)
    for site in sites:
        if not any(site in granted for granted in grants.values()):
            raise InvalidUserRequest(f"site {site!r} is not a site of {', '.join(studies)}")
    if role.site_scoped:
        for slug, granted in grants.items():
            if not granted:
                raise InvalidUserRequest(f"none of the sites given belongs to study {slug!r}")
        return grants
    return {}


def create_user(
    uow: UserUnitOfWork,
    hasher: SecretHasher,
    *,
    email: str,
    role: Role,
    studies: Sequence[str],
    sites: Sequence[str],
    now: datetime,
    locale: str | None = None,
    within: frozenset[str] | None = None,
) -> IssuedEnrolment:
    """Create a user granted those studies (and sites); the enrolment code is returned once.
    An admin given no study is granted every study; given some, those. `within`: the studies
    the creating administrator holds (None: every study), the only ones they may grant."""
    address = normalize_email(email)
    if within is not None and (not studies or not set(studies) <= within):
        raise InvalidUserRequest("grant only studies you administer")
    if locale is not None and locale not in LOCALES:
        raise InvalidUserRequest(f"language must be one of {', '.join(LOCALES)}")
    with uow:
        if uow.users.by_email(address) is not None:
            raise InvalidUserRequest(f"a user {address} exists already")
        grants = _site_grants(uow, role, studies, sites)
        code = _enrolment_code()
        user = WebUser(
            user_id="u_" + secrets.token_hex(8),
            email=address,
            role=role,
            studies=None
            if role is Role.ADMIN and not studies
            else frozenset(dict.fromkeys(studies)),
            sites=grants,
            locale=locale,
            enrolment_hash=hasher.hash(_canonical_code(code)),
            enrolment_expires_at=now + ENROLMENT_VALIDITY,
            created_at=now,
        )
        uow.users.add(user)
        _record_all(
            uow,
            _user_events(
                user,
                "user.created",
                {
                    "email": address,
                    "role": role.value,
                    "sites": sorted(s for g in grants.values() for s in g),
                },
            ),
        )
        uow.commit()
        stored = uow.users.get(user.user_id)
    assert stored is not None
    return IssuedEnrolment(stored, code)


def list_users(uow: UserUnitOfWork) -> list[WebUser]:
    with uow:
        return uow.users.list()


def _existing(uow: UserUnitOfWork, email: str) -> WebUser:
    user = uow.users.by_email(email.strip().lower(), for_update=True)
    if user is None:
        raise NotFound(f"no user {email.strip().lower()!r}")
    return user


def disable_user(uow: UserUnitOfWork, email: str, reason: str, now: datetime) -> WebUser:
    """Disable a user: every open session ends at once."""
    if not reason.strip():
        raise InvalidUserRequest("a reason is required")
    with uow:
        user = _existing(uow, email)
        if user.disabled:
            return user
        user = replace(user, disabled_at=now)
        uow.users.save(user)
        ended = uow.web_sessions.end_all(user.user_id, now)
        _record_all(
            uow,
            _user_events(
                user, "user.disabled", {"disabled": True, "sessions_ended": ended}, reason
            ),
        )
        uow.commit()
    return user


def reset_user(
    uow: UserUnitOfWork, hasher: SecretHasher, email: str, reason: str, now: datetime
) -> IssuedEnrolment:
    """Forget the password and the second factor, end the sessions, lift a lock, and issue a
    new enrolment code (returned once): the user enrols again. A disabled user is enabled."""
    if not reason.strip():
        raise InvalidUserRequest("a reason is required")
    with uow:
        user = _existing(uow, email)
        code = _enrolment_code()
        user = replace(
            user,
            password_hash=None,
            enrolment_hash=hasher.hash(_canonical_code(code)),
            enrolment_expires_at=now + ENROLMENT_VALIDITY,
            totp_enrolled=False,
            totp_last_step=0,
            disabled_at=None,
        )
        uow.users.save(user)
        uow.users.set_totp_secret(user.user_id, None)
        uow.throttle.delete(throttle_key(user.email))
        ended = uow.web_sessions.end_all(user.user_id, now)
        _record_all(uow, _user_events(user, "user.reset", {"sessions_ended": ended}, reason))
        uow.commit()
    return IssuedEnrolment(user, code)


# --- authentication ---------------------------------------------------------------------------


def _check_throttle(uow: UnitOfWork, key: str, now: datetime) -> ThrottleState | None:
    state = uow.throttle.get(key, for_update=True)
    if state is not None:
        retry = state.retry_after(now)
        if retry is not None:
            raise Throttled(f"too many failed attempts; retry in {retry} s", retry)
    return state


def _refuse(
    uow: UserUnitOfWork,
    key: str,
    state: ThrottleState | None,
    now: datetime,
    user: WebUser | None,
    email: str,
    step: str,
    reason: str,
) -> LoginFailed:
    """Count the failure, audit it, commit; the error to raise (with the delay to wait).
    A lock that comes from inside a session (confirming the factors again) ends the user's
    sessions too: someone else may be at an unattended screen."""
    new_state = after_failure(state, key, now)
    uow.throttle.save(new_state)
    action = "auth.user_locked" if new_state.locked_until else "auth.login_refused"
    after: dict[str, Any] = {"step": step, "failures": new_state.failures}
    if new_state.locked_until and user is not None and step == "confirm":
        after["sessions_ended"] = uow.web_sessions.end_all(user.user_id, now)
    if user is not None:
        _record_all(uow, _user_events(user, action, after, reason))
    else:
        try:
            shown = normalize_email(email)
        except InvalidUserRequest:
            shown = "(not an e-mail address)"
        uow.record(
            AuditEvent(
                action=action,
                entity_type="user",
                entity_id=shown[:64],
                reason=reason,
                after=after,
            )
        )
    uow.commit()
    return LoginFailed(
        "the e-mail address, password or code is not right", failure_delay(new_state.failures)
    )


def _succeed(uow: UnitOfWork, key: str, state: ThrottleState | None) -> None:
    if state is not None:
        uow.throttle.delete(key)


def begin_enrolment(
    uow: UserUnitOfWork,
    hasher: SecretHasher,
    factor: SecondFactor,
    *,
    email: str,
    code: str,
    password: str,
    now: datetime,
) -> Enrolment:
    """Prove the enrolment code, set the password and draw a TOTP secret; the session is
    `enrolling` until a code from the new secret confirms it (`complete_enrolment`). The
    enrolment code stays valid until then, so an interrupted enrolment starts again."""
    key = throttle_key(email)
    with uow:
        state = _check_throttle(uow, key, now)
        user = uow.users.by_email(email.strip().lower(), for_update=True)
        if user is None or user.enrolment_hash is None:
            hasher.verify_dummy(code)
            raise _refuse(uow, key, state, now, user, email, "enrolment", "no enrolment pending")
        if user.disabled:
            raise _refuse(uow, key, state, now, user, email, "enrolment", "user disabled")
        expired = user.enrolment_expires_at is None or user.enrolment_expires_at < now
        if expired or not hasher.verify(user.enrolment_hash, _canonical_code(code)):
            reason = "enrolment code expired" if expired else "wrong enrolment code"
            raise _refuse(uow, key, state, now, user, email, "enrolment", reason)
        check_password(password, user.email)
        _succeed(uow, key, state)
        _act_as(uow, user)
        secret = factor.new_secret()
        user = replace(user, password_hash=hasher.hash(password), totp_enrolled=False)
        uow.users.save(user)
        uow.users.set_totp_secret(user.user_id, secret)
        # A new password: any session of an interrupted enrolment ends with the old one.
        uow.web_sessions.end_all(user.user_id, now)
        new = _new_session(user, SessionState.ENROLLING, now)
        uow.web_sessions.add(new.session)
        _record_all(uow, _user_events(user, "user.enrolment_started"))
        uow.commit()
    return Enrolment(new, secret, factor.provisioning_uri(secret, user.email))


def _verify_code(
    uow: UserUnitOfWork, factor: SecondFactor, user: WebUser, code: str, now: datetime
) -> int | None:
    secret = uow.users.totp_secret(user.user_id)
    if secret is None:
        return None
    return factor.verify(secret, code, now, user.totp_last_step)


def _session_user(
    uow: UserUnitOfWork, hashed: str, now: datetime, states: Sequence[SessionState]
) -> tuple[WebSession, WebUser]:
    session = uow.web_sessions.get(hashed, for_update=True)
    if session is None or session.end_reason(now) is not None or session.state not in states:
        raise SessionInvalid("your session has ended; log in again")
    user = uow.users.get(session.user_id, for_update=True)
    if user is None or user.disabled:
        raise SessionInvalid("your session has ended; log in again")
    return session, user


def complete_enrolment(
    uow: UserUnitOfWork, factor: SecondFactor, hashed: str, code: str, now: datetime
) -> NewSession:
    """Confirm the new second factor with a code from it: the user is enrolled and logged in,
    under a new session token (the enrolling one ends)."""
    with uow:
        session, user = _session_user(uow, hashed, now, [SessionState.ENROLLING])
        key = throttle_key(user.email)
        state = _check_throttle(uow, key, now)
        step = _verify_code(uow, factor, user, code, now)
        if step is None:
            raise _refuse(uow, key, state, now, user, user.email, "enrolment_totp", "wrong code")
        _succeed(uow, key, state)
        _act_as(uow, user)
        user = replace(
            user,
            totp_enrolled=True,
            totp_last_step=step,
            enrolment_hash=None,
            enrolment_expires_at=None,
            last_login_at=now,
        )
        uow.users.save(user)
        new = _renewed(uow, session, user, now)
        _record_all(uow, _user_events(user, "user.enrolled"))
        _record_all(uow, _user_events(user, "auth.login", {"factors": ["password", "totp"]}))
        uow.commit()
    return new


def login_password(
    uow: UserUnitOfWork, hasher: SecretHasher, *, email: str, password: str, now: datetime
) -> NewSession:
    """First factor: a session waiting for the TOTP code (`login_second_factor`)."""
    key = throttle_key(email)
    with uow:
        state = _check_throttle(uow, key, now)
        user = uow.users.by_email(email.strip().lower())
        if user is None or user.password_hash is None:
            hasher.verify_dummy(password)
            reason = "unknown e-mail" if user is None else "not enrolled"
            raise _refuse(uow, key, state, now, user, email, "password", reason)
        if not hasher.verify(user.password_hash, password):
            raise _refuse(uow, key, state, now, user, email, "password", "wrong password")
        if user.disabled:
            raise _refuse(uow, key, state, now, user, email, "password", "user disabled")
        if not user.totp_enrolled:
            raise _refuse(uow, key, state, now, user, email, "password", "not enrolled")
        new = _new_session(user, SessionState.SECOND_FACTOR, now)
        uow.web_sessions.add(new.session)
        uow.commit()
    return new


def login_second_factor(
    uow: UserUnitOfWork, factor: SecondFactor, hashed: str, code: str, now: datetime
) -> NewSession:
    """Second factor: a new, active session replaces the pending one (whose token ends); the
    throttle's count is cleared."""
    with uow:
        session, user = _session_user(uow, hashed, now, [SessionState.SECOND_FACTOR])
        key = throttle_key(user.email)
        state = _check_throttle(uow, key, now)
        step = _verify_code(uow, factor, user, code, now)
        if step is None:
            raise _refuse(uow, key, state, now, user, user.email, "totp", "wrong code")
        _succeed(uow, key, state)
        _act_as(uow, user)
        uow.users.save(replace(user, totp_last_step=step, last_login_at=now))
        new = _renewed(uow, session, user, now)
        _record_all(uow, _user_events(user, "auth.login", {"factors": ["password", "totp"]}))
        uow.commit()
    return new


def confirm_factors(
    uow: UserUnitOfWork,
    hasher: SecretHasher,
    factor: SecondFactor,
    hashed: str,
    *,
    password: str,
    code: str,
    now: datetime,
) -> WebSession:
    """Prove both factors again inside an active session (right before an arm is shown):
    the session's `authenticated_at` becomes `now`. Throttled like a login."""
    with uow:
        session, user = _session_user(uow, hashed, now, [SessionState.ACTIVE])
        key = throttle_key(user.email)
        state = _check_throttle(uow, key, now)
        if user.password_hash is None or not hasher.verify(user.password_hash, password):
            raise _refuse(uow, key, state, now, user, user.email, "confirm", "wrong password")
        step = _verify_code(uow, factor, user, code, now)
        if step is None:
            raise _refuse(uow, key, state, now, user, user.email, "confirm", "wrong code")
        _succeed(uow, key, state)
        uow.users.save(replace(user, totp_last_step=step))
        session = replace(session, authenticated_at=now, last_seen_at=now)
        uow.web_sessions.save(session)
        _record_all(uow, _user_events(user, "auth.reauthenticated"))
        uow.commit()
    return session


def resolve_session(
    uow: UserUnitOfWork,
    hashed: str,
    now: datetime,
    states: Sequence[SessionState] = (SessionState.ACTIVE,),
) -> tuple[WebSession, WebUser]:
    """The session and its user, touched (`last_seen_at`); a session past its time is ended
    (audited) and refused, as is one of a disabled user."""
    with uow:
        session = uow.web_sessions.get(hashed, for_update=True)
        if session is None:
            raise SessionInvalid("you are not logged in")
        reason = session.end_reason(now)
        user = uow.users.get(session.user_id)
        if reason is not None or user is None or user.disabled:
            if session.ended_at is None:
                uow.web_sessions.save(replace(session, ended_at=now))
                if user is not None and session.state is SessionState.ACTIVE:
                    _act_as(uow, user)
                    _record_all(uow, _user_events(user, "auth.session_expired", {"cause": reason}))
                uow.commit()
            raise SessionInvalid("your session has ended; log in again")
        if session.state not in states:
            raise SessionInvalid("finish logging in first")
        session = replace(session, last_seen_at=now)
        uow.web_sessions.save(session)
        uow.commit()
    return session, user


def logout(uow: UserUnitOfWork, hashed: str, now: datetime) -> None:
    with uow:
        session = uow.web_sessions.get(hashed, for_update=True)
        if session is None or session.ended_at is not None:
            return
        uow.web_sessions.save(replace(session, ended_at=now))
        user = uow.users.get(session.user_id)
        if user is not None and session.state is SessionState.ACTIVE:
            _act_as(uow, user)
            _record_all(uow, _user_events(user, "auth.logout"))
        uow.commit()


def set_locale(uow: UserUnitOfWork, user_id: str, locale: str | None) -> WebUser:
    """The user's language for the pages (None: the browser's)."""
    if locale is not None and locale not in LOCALES:
        raise InvalidUserRequest(f"language must be one of {', '.join(LOCALES)}")
    with uow:
        user = uow.users.get(user_id, for_update=True)
        if user is None:
            raise NotFound(f"no user {user_id!r}")
        if user.locale != locale:
            _act_as(uow, user)
            uow.users.save(replace(user, locale=locale))
            _record_all(
                uow, _user_events(user, "user.locale_changed", {"locale": locale or "browser"})
            )
            uow.commit()
    return replace(user, locale=locale)


def principal_of(user: WebUser, session: WebSession) -> Principal:
    """The user as the use cases know a caller; `issued_at` is when both factors were last
    proved."""
    return Principal(
        subject=user.user_id,
        role=user.role,
        studies=user.studies,
        sites=user.sites,
        issued_at=session.authenticated_at,
        actor_id=user.actor_id,
    )


def pending_enrolment(
    uow: UserUnitOfWork, factor: SecondFactor, hashed: str, now: datetime
) -> tuple[str, str]:
    """(secret, otpauth URI) of the second factor an `enrolling` session is setting up."""
    with uow:
        _session, user = _session_user(uow, hashed, now, [SessionState.ENROLLING])
        secret = uow.users.totp_secret(user.user_id)
        if secret is None:
            raise SessionInvalid("start the enrolment again")
        uow.commit()  # the secret may have been sealed again under the active key
    return secret, factor.provisioning_uri(secret, user.email)
