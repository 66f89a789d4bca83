"""API clients and the throttle on failed token requests.

Throttle rule, per client id asked for (known or not, so ids cannot be probed): failures
are counted within a window of WINDOW since the first; each failure is answered after a
delay that doubles (0.25 s, 0.5 s, 1 s, 2 s cap); the MAX_FAILURES-th failure locks that
client id for LOCK, during which every request for it, right secret or not, gets 429 with
Retry-After. A success clears the count. Other client ids are never affected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from app.domain.errors import DomainError
from app.domain.roles import Role

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
LOCK = timedelta(minutes=15)


class AuthenticationFailed(DomainError):
    """The client id or secret is wrong, or the client is disabled."""

    code = "invalid_client"


class CallerNoLongerValid(DomainError):
    """A token's client was disabled, or its secret rotated, after the token was issued."""

    code = "unauthorized"


class Throttled(DomainError):
    """Too many failed token requests for this client id; retry later."""

    code = "too_many_requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class InvalidGrant(DomainError):
    """A client cannot be created or changed as asked (unknown study, site or role)."""

    code = "invalid_client_request"


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    role: Role
    studies: frozenset[str] | None  # None: every study
    sites: Mapping[str, frozenset[str]] = field(default_factory=dict)
    secret_hash: str = ""
    secret_version: int = 1
    disabled_at: datetime | None = None
    created_at: datetime | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class ThrottleState:
    key: str
    failures: int
    first_failure_at: datetime
    locked_until: datetime | None = None

    def retry_after(self, now: datetime) -> int | None:
        """Seconds until the lock ends, or None when not locked."""
        if self.locked_until is None or self.locked_until <= now:
            return None
        return max(1, int((self.locked_until - now).total_seconds() + 0.999))

    @property
    def remaining(self) -> int:
        """Failures still allowed before the lock."""
        return max(0, MAX_FAILURES - self.failures)

    def resets_in(self, now: datetime) -> int:
        """Seconds until the failures counted stop counting: the lock's end when locked, else
        the end of the window opened by the first failure."""
        end = self.locked_until or self.first_failure_at + WINDOW
        return max(0, int((end - now).total_seconds() + 0.999))


def after_failure(state: ThrottleState | None, key: str, now: datetime) -> ThrottleState:
    if (
        state is None
        or now - state.first_failure_at > WINDOW
        or (state.locked_until is not None and state.locked_until <= now)
    ):
        state = ThrottleState(key=key, failures=0, first_failure_at=now)
    failures = state.failures + 1
    locked_until = now + LOCK if failures >= MAX_FAILURES else None
    return replace(state, failures=failures, locked_until=locked_until)


def failure_delay(failures: int) -> float:
    """Seconds to wait before answering the failures-th failed attempt."""
    return float(min(0.25 * 2 ** max(failures - 1, 0), 2.0))
