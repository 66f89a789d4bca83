"""Idempotency-Key: the first successful response to a POST is stored in the same
transaction as its effect, so a retry (even one racing the first) gets it back unchanged.

The unit of work inserts the key's row when it starts: a concurrent request with the same
key waits on that row's unique index until the first commits, then finds the stored
response and replays it. The same key with another body is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.adapters.db.models import IdempotencyRow
from app.domain.errors import DomainError

Render = Callable[[Any], tuple[int, Any]]


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
            raise IdempotentReplay(row.status_code, row.response_body)

    def begin(self, session: Session) -> None:
        row = self._existing(session)
        if row is not None:
            self._replay_or_refuse(row)
        try:
            with session.begin_nested():
                row = IdempotencyRow(
                    principal=self.principal,
                    key=self.key,
                    fingerprint=self.fingerprint,
                    created_at=datetime.now(UTC),
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
