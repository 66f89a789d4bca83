"""Appending to the audit chain (app.adapters.db.audit.append_events): on PostgreSQL the
database's audit_append hashes the events while it holds the head; the chain it writes is
the one `iwrs audit verify` checks, on both databases, under concurrent writers too."""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.adapters.db import audit
from app.domain.audit import Actor, AuditEvent, AuditRecord, verify_chain

ACTOR = Actor("client:test", "edc")


def _event(chain: str, n: int, **extra: object) -> AuditEvent:
    return AuditEvent(
        action="subject.randomized",
        entity_type="subject",
        entity_id=f"S-{n}",
        study=chain,
        subject_id=f"S-{n}",
        after={"n": n, "note": 'a "quoted" é \\ value', "nested": {"b": [1, None, True]}},
        **extra,  # type: ignore[arg-type]
    )


def _append(engine: Engine, events: list[AuditEvent], request_id: str | None = "rq-1") -> None:
    with Session(engine) as session, session.begin():
        audit.append_events(session, events, ACTOR, request_id)


def _intact(engine: Engine, chain: str) -> list[AuditRecord]:
    with Session(engine) as session:
        records = list(audit.iter_chain(session, chain))
        assert verify_chain(chain, records, audit.chain_head(session, chain)) is None
        return records


class TestAppend:
    def test_a_chain_written_in_several_transactions_verifies(
        self, engine: Engine, chain: str
    ) -> None:
        _append(engine, [_event(chain, 1)])
        _append(engine, [_event(chain, 2), _event(chain, 3, reason="a reason")], None)
        _append(engine, [_event(chain, 4, before={"kit_status": "at_site"})])

        records = _intact(engine, chain)

        assert [r.seq for r in records] == [1, 2, 3, 4]
        assert [r.entity_id for r in records] == ["S-1", "S-2", "S-3", "S-4"]
        assert records[2].reason == "a reason"
        assert records[1].request_id is None
        assert records[3].before == {"kit_status": "at_site"}
        assert records[1].occurred_at == records[2].occurred_at  # one transaction, one time
        times = [r.occurred_at for r in records]
        assert times == sorted(times)
        assert all(r.occurred_at.utcoffset() is not None for r in records)

    def test_events_of_two_chains_in_one_transaction(self, engine: Engine, chain: str) -> None:
        other = f"{chain}-b"
        _append(engine, [_event(chain, 1), _event(other, 1), _event(chain, 2)])

        assert [r.entity_id for r in _intact(engine, chain)] == ["S-1", "S-2"]
        assert [r.entity_id for r in _intact(engine, other)] == ["S-1"]

    def test_a_rollback_leaves_neither_events_nor_head(self, engine: Engine, chain: str) -> None:
        _append(engine, [_event(chain, 1)])
        with Session(engine) as session:
            session.begin()
            audit.append_events(session, [_event(chain, 2)], ACTOR, None)
            session.flush()
            session.rollback()

        assert [r.seq for r in _intact(engine, chain)] == [1]

    def test_concurrent_writers_keep_one_unbroken_chain(self, engine: Engine, chain: str) -> None:
        writers, each = 6, 15
        errors: list[BaseException] = []
        start = threading.Barrier(writers)

        def write(w: int) -> None:
            try:
                start.wait()
                for i in range(each):
                    _append(engine, [_event(chain, w * 100 + i), _event(chain, w * 100 + i)])
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        records = _intact(engine, chain)
        assert [r.seq for r in records] == list(range(1, 2 * writers * each + 1))
        # Each transaction's two events are adjacent: nobody wrote between them.
        assert all(
            records[i].entity_id == records[i + 1].entity_id for i in range(0, len(records), 2)
        )
