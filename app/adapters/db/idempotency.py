"""Idempotency-Key: the first successful response to a POST is stored in the same
transaction as its effect, so a retry (even one racing the first) gets it back unchanged.

The unit of work inserts the key's row when it starts: a concurrent request with the same
key waits on that row's unique index until the first commits, then finds the stored
response and replays it. The same key with another body is refused.

A record is kept for a retention (`IWRS_IDEMPOTENCY_RETENTION_SECONDS`, 24 h by default):
past it, the key is free again and its request is a new one (the stale record is deleted in
that request's transaction), and housekeeping deletes the records nobody retried. Before a
replay, `recheck` asks again whether the caller may have the answer (the route's
authorization dependency has run already).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.adapters.db.models import IdempotencyRow
from app.domain.errors import DomainError

Render = Callable[[Any], tuple[int, Any]]
DEFAULT_RETENTION = timedelta(hours=24)


class IdempotencyKeyReused(DomainError):
    """The Idempotency-Key was used before with another request body."""

    code = "idempotency_key_reused"


class IdempotentReplay(Exception):
    """The request was answered before: here is that answer."""

    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.body = body


@dataclass
class IdempotencyGuard:
    principal: str
    key: str
    fingerprint: str
    render: Render
    retention: timedelta = DEFAULT_RETENTION
    recheck: Callable[[], None] | None = None  # raises when the caller may not be answered
    _row: IdempotencyRow | None = None

    def _existing(self, session: Session) -> IdempotencyRow | None:
        return session.scalars(
            select(IdempotencyRow)
            .where(IdempotencyRow.principal == self.principal, IdempotencyRow.key == self.key)
            .execution_options(populate_existing=True)
        ).first()

    def _replay_or_refuse(self, row: IdempotencyRow) -> None:
        if row.fingerprint != self.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with another request; use a new key"
            )
        if row.status_code is not None and row.response_body is not None:
            if self.recheck is not None:
                self.recheck()
            raise IdempotentReplay(row.status_code, row.response_body)

    def begin(self, session: Session, now: datetime) -> None:
        row = self._existing(session)
        if row is not None and row.created_at < now - self.retention:
            # Past its retention: forgotten, so this request is a new one. (A request racing
            # this one waits on the row, then finds the new record and replays it.)
            session.execute(delete(IdempotencyRow).where(IdempotencyRow.id == row.id))
            row = None
        if row is not None:
            self._replay_or_refuse(row)
        try:
            with session.begin_nested():
                row = IdempotencyRow(
                    principal=self.principal,
                    key=self.key,
                    fingerprint=self.fingerprint,
                    created_at=now,
                )
                session.add(row)
                session.flush()
        except IntegrityError:
            # Another request with this key committed first (we waited for it): replay it.
            row = self._existing(session)
            assert row is not None
            self._replay_or_refuse(row)
            raise
        self._row = row

    def finish(self, session: Session, result: Any) -> None:
        assert self._row is not None
        status, body = self.render(result)
        self._row.status_code = status
        self._row.response_body = json.dumps(body, separators=(",", ":"), default=str)
        session.flush()


class SqlIdempotencyRecords:
    """The stored answers, as housekeeping sees them."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def purge(self, created_before: datetime) -> int:
        result = self._session.execute(
            delete(IdempotencyRow).where(IdempotencyRow.created_at < created_before)
        )
        return int(getattr(result, "rowcount", 0) or 0)
