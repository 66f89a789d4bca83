"""The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-12) on the one
throttled path, `POST /oauth/token`.

Its quota policy is the throttle of app.domain.clients: per client id, MAX_FAILURES failed
token requests within WINDOW seconds of the first; the next failure locks the id for LOCK,
answered 429 with Retry-After. So the quota counts failed requests, not requests, and
a success restores it whole:

    RateLimit-Policy: "token-failures";q=5;w=900
    RateLimit: "token-failures";r=3;t=870      (two failures counted, 870 s left to run)
    RateLimit: "token-failures";r=0;t=900      (locked: the same as Retry-After)
    RateLimit: "token-failures";r=5            (nothing counted: no reset to announce)
"""

from __future__ import annotations

from datetime import datetime

from app.domain.clients import MAX_FAILURES, WINDOW, ThrottleState

POLICY = "token-failures"


def policy() -> str:
    return f'"{POLICY}";q={MAX_FAILURES};w={int(WINDOW.total_seconds())}'


def headers(remaining: int, reset: int | None) -> dict[str, str]:
    """Both fields; `reset` (seconds until the counted failures stop counting) is left out
    when nothing is counted."""
    current = f'"{POLICY}";r={remaining}' + ("" if reset is None else f";t={reset}")
    return {"RateLimit-Policy": policy(), "RateLimit": current}


def after(throttle: ThrottleState | None, now: datetime) -> dict[str, str]:
    """The fields after a token request: a success (None) restores the whole quota."""
    if throttle is None:
        return headers(MAX_FAILURES, None)
    return headers(throttle.remaining, throttle.resets_in(now))


def locked(retry_after: int) -> dict[str, str]:
    """The fields of a 429: nothing remains until the lock ends."""
    return headers(0, retry_after)
