"""Writing and reading the audit chain (see app.domain.audit for the chain rule)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, bindparam, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.adapters.db import hot
from app.adapters.db.models import AuditChainHeadRow, AuditEventRow
from app.domain.audit import GENESIS_HASH, Actor, AuditEvent, AuditRecord, canonical_parts


def database_now(session: Session) -> datetime:
    """The database clock, in UTC, to the microsecond."""
    if session.get_bind().dialect.name == "sqlite":
        raw = session.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)
    value = session.execute(text("SELECT statement_timestamp()")).scalar_one()
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


# The Python path of the chain (SQLite; PostgreSQL runs audit_append, below), built once:
# the head lock with the database's clock, the head update and the event insert.
_head = AuditChainHeadRow.__table__.c
_LOCK_HEAD = hot.Hot(
    select(_head.seq, _head.hash, func.strftime("%Y-%m-%d %H:%M:%f", "now"))
    .where(_head.chain == bindparam("chain"))
    .with_for_update()
)
_UPDATE_HEAD = hot.Hot(
    update(AuditChainHeadRow)
    .where(_head.chain == bindparam("head_chain"))
    .values(seq=bindparam("head_seq"), hash=bindparam("head_hash"), updated_at=bindparam("at"))
)
_INSERT_EVENTS = hot.Hot(insert(AuditEventRow))


def _lock_head(session: Session, chain: str) -> tuple[int, str, datetime]:
    """Lock the chain's head (made at its first event); its seq and hash, and the time now
    (SQLite: its clock is text)."""
    rows = hot.rows(session, _LOCK_HEAD, {"chain": chain})
    if not rows:
        session.connection().execute(
            sqlite.insert(AuditChainHeadRow)
            .values(chain=chain, seq=0, hash=GENESIS_HASH, updated_at=database_now(session))
            .on_conflict_do_nothing(index_elements=["chain"])
        )
        rows = hot.rows(session, _LOCK_HEAD, {"chain": chain})
    seq, digest, now_text = rows[0]
    return int(seq), str(digest), datetime.fromisoformat(now_text).replace(tzinfo=UTC)


_TEXTS = postgresql.ARRAY(Text)
_APPEND = hot.Hot(
    select(
        func.audit_append(
            bindparam("chain", type_=Text),
            bindparam("actor_id", type_=Text),
            bindparam("actor_role", type_=Text),
            bindparam("request_id", type_=Text),
            *(
                bindparam(name, type_=_TEXTS)
                for name in (
                    "action",
                    "entity_type",
                    "entity_id",
                    "subject_id",
                    "reason",
                    "before",
                    "after",
                    "before_time",
                    "before_seq",
                    "rest",
                )
            ),
        )
    )
)


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value))


def append_events(
    session: Session, events: Sequence[AuditEvent], actor: Actor, request_id: str | None
) -> None:
    """Append the events to their chains, in this transaction, holding each chain's head.

    On PostgreSQL, one call of the database's `audit_append` per chain (a migration makes
    it) locks the head, hashes and inserts the events and moves the head. It is deferred,
    so it travels with the COMMIT: the head is held only while the database runs it and
    commits, and it costs no round trip of its own. The events' time is the database's clock
    once the head is locked. The service sends each event's canonical JSON cut around the
    three values the head gives (app.domain.audit.canonical_parts), so the chain rule is the
    one `iwrs audit verify` checks. On SQLite the same is done here, in Python: every event
    of one transaction carries the database's clock when the first head was locked."""
    if not events:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.flush()  # whatever the ORM still holds goes first
        for chain in sorted({e.chain for e in events}):
            mine = [e for e in events if e.chain == chain]
            parts = [canonical_parts(_content(e, actor, request_id)) for e in mine]
            hot.later(
                session,
                _APPEND,
                {
                    "chain": chain,
                    "actor_id": actor.actor_id,
                    "actor_role": actor.role,
                    "request_id": request_id,
                    "action": [e.action for e in mine],
                    "entity_type": [e.entity_type for e in mine],
                    "entity_id": [e.entity_id for e in mine],
                    "subject_id": [e.subject_id for e in mine],
                    "reason": [e.reason for e in mine],
                    "before": [_json(e.before) for e in mine],
                    "after": [_json(e.after) for e in mine],
                    "before_time": [p.before_time for p in parts],
                    "before_seq": [p.before_seq for p in parts],
                    "rest": [p.rest for p in parts],
                },
            )
        return
    heads: dict[str, tuple[int, str]] = {}
    now: datetime | None = None
    for chain in sorted({e.chain for e in events}):
        seq, digest, locked_at = _lock_head(session, chain)
        heads[chain] = (seq, digest)
        now = now or locked_at
    assert now is not None
    rows = []
    for event in events:
        seq, prev_hash = heads[event.chain]
        record = AuditRecord(
            **_content(event, actor, request_id), seq=seq + 1, occurred_at=now, prev_hash=prev_hash
        )
        digest = record.computed_hash()
        rows.append({**record.payload(), "occurred_at": now, "hash": digest})
        heads[event.chain] = (record.seq, digest)
    session.flush()  # whatever the ORM still holds goes first
    for chain, (seq, digest) in heads.items():
        hot.later(
            session,
            _UPDATE_HEAD,
            {"head_chain": chain, "head_seq": seq, "head_hash": digest, "at": now},
        )
    hot.later(session, _INSERT_EVENTS, rows)


def _content(event: AuditEvent, actor: Actor, request_id: str | None) -> dict[str, Any]:
    """What the event's hash covers besides occurred_at, prev_hash and seq."""
    return {
        "chain": event.chain,
        "actor_id": actor.actor_id,
        "actor_role": actor.role,
        "action": event.action,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "subject_id": event.subject_id,
        "reason": event.reason,
        "before": dict(event.before) if event.before is not None else None,
        "after": dict(event.after) if event.after is not None else None,
        "request_id": request_id,
    }


def row_to_record(row: AuditEventRow) -> AuditRecord:
    return AuditRecord(
        chain=row.chain,
        seq=row.seq,
        occurred_at=row.occurred_at,
        actor_id=row.actor_id,
        actor_role=row.actor_role,
        action=row.action,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        subject_id=row.subject_id,
        reason=row.reason,
        before=row.before,
        after=row.after,
        request_id=row.request_id,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def chains(session: Session) -> list[str]:
    names = set(session.scalars(select(AuditEventRow.chain).distinct()))
    names |= set(session.scalars(select(AuditChainHeadRow.chain)))
    return sorted(names)


def iter_chain(session: Session, chain: str, batch: int = 1000) -> Iterator[AuditRecord]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEventRow)
            .where(AuditEventRow.chain == chain, AuditEventRow.seq > last)
            .order_by(AuditEventRow.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield row_to_record(row)
        last = rows[-1].seq


def chain_head(session: Session, chain: str) -> tuple[int, str] | None:
    row = session.get(AuditChainHeadRow, chain)
    return None if row is None else (row.seq, row.hash)


def event_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEventRow)) or 0)
