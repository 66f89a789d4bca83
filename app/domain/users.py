"""Human users of the web pages and their sessions.

A user is created at the command line with one role and its grants (studies; sites for the
site roles), and gets a one-time enrolment code. At first login the user proves the code,
sets a password (argon2) and enrols a second factor (TOTP, RFC 6238: 6 digits, 30 s steps,
one step of drift either way). Every role must enrol it: the arm-seeing roles
(unblinded_statistician, safety_officer, investigator) must by rule, and the others change
or read trial records too. A TOTP code is accepted once: a step at or before the last one
used is refused, so a code seen over a shoulder cannot be replayed.

A session lives in the database; its cookie holds only a random token, and the database
only that token's SHA-256. It moves `enrolling` (code and password proved, TOTP not yet
confirmed) or `second_factor` (password proved) -> `active` (both factors proved). It ends
at logout, after IDLE_TIMEOUT without a request, PENDING_TIMEOUT in a pending state, or
MAX_AGE after it began, whichever comes first. `authenticated_at`, the time both factors
were last proved, is the principal's `issued_at`: emergency unblinding asks for both again
and needs it fresh.

Failed logins (password, TOTP, enrolment code) count per e-mail address under the API
clients' throttle rule (app.domain.clients): slowed, then locked for a while.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from app.domain.errors import DomainError
from app.domain.roles import Role

IDLE_TIMEOUT = timedelta(minutes=15)
PENDING_TIMEOUT = timedelta(minutes=5)
MAX_AGE = timedelta(hours=12)
ENROLMENT_VALIDITY = timedelta(days=7)
MIN_PASSWORD = 12
MAX_PASSWORD = 256
LOCALES = ("en", "fr")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{2,63}$")


class InvalidUserRequest(DomainError):
    """A user cannot be created or changed as asked (e-mail, role, study or site)."""

    code = "invalid_user_request"


class LoginFailed(DomainError):
    """The e-mail, password, code or enrolment code is wrong, or the user is disabled."""

    code = "login_failed"

    def __init__(self, detail: str, delay: float = 0.0) -> None:
        super().__init__(detail)
        self.delay = delay  # seconds to wait before answering, growing with each failure


class WeakPassword(DomainError):
    """The new password does not meet the rules (length, not the e-mail)."""

    code = "weak_password"


class SessionInvalid(DomainError):
    """No session, or it ended (logout, idle timeout, age, user disabled)."""

    code = "session_invalid"


class SessionState(StrEnum):
    ENROLLING = "enrolling"
    SECOND_FACTOR = "second_factor"
    ACTIVE = "active"


def second_factor_required(role: Role) -> bool:
    """Every role enrols TOTP (see the module doc); the arm-seeing roles by rule."""
    return True


def normalize_email(text: str) -> str:
    email = text.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidUserRequest("give a valid e-mail address")
    return email


def check_password(password: str, email: str) -> None:
    if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD:
        raise WeakPassword(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if password.strip().lower() == email.lower() or len(set(password)) < 4:
        raise WeakPassword("choose a password that is not your e-mail and not repetitive")


def throttle_key(email: str) -> str:
    """The throttle row of an e-mail address (kept apart from API client ids)."""
    return ("user:" + email.strip().lower())[:64]


@dataclass(frozen=True, slots=True)
class WebUser:
    user_id: str
    email: str
    role: Role
    studies: frozenset[str] | None  # None: every study (administrators)
    sites: Mapping[str, frozenset[str]] = field(default_factory=dict)
    locale: str | None = None
    password_hash: str | None = field(default=None, repr=False)
    enrolment_hash: str | None = field(default=None, repr=False)
    enrolment_expires_at: datetime | None = None
    totp_enrolled: bool = False
    totp_last_step: int = 0
    disabled_at: datetime | None = None
    created_at: datetime | None = None
    last_login_at: datetime | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    @property
    def enrolled(self) -> bool:
        return self.password_hash is not None and self.totp_enrolled

    @property
    def actor_id(self) -> str:
        return f"user:{self.email}"


@dataclass(frozen=True, slots=True)
class WebSession:
    token_hash: str  # SHA-256 of the cookie's token; the token itself is never stored
    user_id: str
    state: SessionState
    csrf_token: str = field(repr=False)
    created_at: datetime
    last_seen_at: datetime
    authenticated_at: datetime | None = None
    ended_at: datetime | None = None

    def end_reason(self, now: datetime) -> str | None:
        """Why the session is over at `now` ("logout", "idle", "age", "pending"), or None."""
        if self.ended_at is not None:
            return "logout"
        if now - self.created_at > MAX_AGE:
            return "age"
        if self.state is not SessionState.ACTIVE and now - self.created_at > PENDING_TIMEOUT:
            return "pending"
        if now - self.last_seen_at > IDLE_TIMEOUT:
            return "idle"
        return None
