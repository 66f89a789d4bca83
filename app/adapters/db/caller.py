"""The API caller a unit of work must still find valid.

A bearer token names a client and the version of its secret. The client's role and grants
never change, so the API keeps them in memory; whether the client is still enabled, with
the same secret, is read by the first statement of every unit of work the request opens,
in its own transaction. So a disabled client or a rotated secret ends its tokens at once,
and no API call pays for a separate read (with its own connection and transaction) first.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallerCheck:
    client_id: str
    secret_version: int


# Set by the API's authentication for the request it serves; None elsewhere (CLI, web pages,
# housekeeping), where there is no token to check.
caller_check: ContextVar[CallerCheck | None] = ContextVar("iwrs_caller_check", default=None)
