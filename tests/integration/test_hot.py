"""Hot statements (app.adapters.db.hot): deferred writes keep their order, die with a
rollback, fail as SQLAlchemy errors; deferred checks refuse before the next rows are used."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, Text, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.adapters.db import hot
from app.adapters.db.models import AuditChainHeadRow

_head = AuditChainHeadRow.__table__.c
ADD = hot.Hot(insert(AuditChainHeadRow))
BUMP = hot.Hot(
    update(AuditChainHeadRow).where(_head.chain == bindparam("c")).values(seq=bindparam("s"))
)
READ = hot.Hot(
    select(_head.chain, _head.seq, _head.updated_at).where(_head.chain == bindparam("c"))
)
SOME = hot.Hot(
    select(_head.chain)
    .where(_head.chain.in_(bindparam("cs", expanding=True)))
    .order_by(_head.chain)
)


class Refused(Exception):
    pass


def _row(name: str, seq: int = 0) -> dict[str, Any]:
    return {"chain": name, "seq": seq, "hash": "0" * 64, "updated_at": datetime.now(UTC)}


def _committed(engine: Engine, name: str) -> list[Any]:
    with Session(engine) as session:
        return list(session.execute(select(_head.seq).where(_head.chain == name)).scalars())


class TestDeferredWrites:
    def test_the_next_statement_sees_them_in_order(self, engine: Engine, chain: str) -> None:
        with Session(engine) as session:
            hot.later(session, ADD, _row(chain))
            hot.later(session, BUMP, {"c": chain, "s": 7})
            (found,) = hot.rows(session, READ, {"c": chain})
            assert (found.chain, found.seq) == (chain, 7)
            assert found.updated_at.tzinfo is UTC  # result processors applied, as SQLAlchemy's
            hot.later(session, BUMP, {"c": chain, "s": 8})
            # A statement of SQLAlchemy's own goes after them too (the engine hook).
            assert session.execute(select(_head.seq).where(_head.chain == chain)).scalar() == 8
            session.commit()
        assert _committed(engine, chain) == [8]

    def test_commit_sends_them(self, engine: Engine, chain: str) -> None:
        with Session(engine) as session:
            session.connection()
            hot.later(session, ADD, [_row(chain), _row(chain + "-b", 2)])
            session.commit()
        assert _committed(engine, chain) == [0]
        assert _committed(engine, chain + "-b") == [2]

    def test_a_rollback_drops_them_and_the_next_transaction_never_sends_them(
        self, engine: Engine, chain: str
    ) -> None:
        with Session(engine) as session:
            session.connection()
            hot.later(session, ADD, _row(chain))
            session.rollback()
            assert hot.rows(session, READ, {"c": chain}) == []
            session.commit()
        assert _committed(engine, chain) == []

    def test_expanding_lists_of_any_length(self, engine: Engine, chain: str) -> None:
        names = [f"{chain}-{i}" for i in range(5)]
        with Session(engine) as session:
            hot.later(session, ADD, [_row(n) for n in names])
            for size in (1, 3, 5, 3):
                found = hot.rows(session, SOME, {"cs": names[:size]})
                assert [r.chain for r in found] == names[:size]

    def test_a_failing_write_is_sqlalchemys_error_and_nothing_lands(
        self, engine: Engine, chain: str
    ) -> None:
        with Session(engine) as session:

            def twice() -> None:
                hot.later(session, ADD, _row(chain))
                hot.later(session, ADD, _row(chain))  # the same key twice
                hot.rows(session, READ, {"c": chain})

            # Raised by the next statement (at once on SQLite, which defers nothing).
            with pytest.raises(IntegrityError):
                twice()
            session.rollback()
        assert _committed(engine, chain) == []


class TestDeferredChecks:
    def test_a_refusal_comes_before_the_next_rows(self, engine: Engine, chain: str) -> None:
        seen: list[Any] = []

        def refuse(found: list[Any]) -> None:
            seen.extend(found)
            raise Refused

        with Session(engine) as session:
            hot.later(session, ADD, _row(chain, 3))

            def check_then_read() -> None:
                hot.check_later(session, READ, {"c": chain}, refuse)
                hot.rows(session, READ, {"c": chain})

            with pytest.raises(Refused):
                check_then_read()
            session.rollback()
        assert [r.seq for r in seen] == [3]
        assert _committed(engine, chain) == []

    def test_a_check_passes_unnoticed(self, engine: Engine, chain: str) -> None:
        with Session(engine) as session:
            hot.check_later(session, READ, {"c": chain}, lambda found: None)
            assert hot.rows(session, READ, {"c": chain}) == []


ECHO = hot.Hot(
    select(
        func.cardinality(bindparam("texts", type_=postgresql.ARRAY(Text))).label("n"),
        bindparam("texts", type_=postgresql.ARRAY(Text)).label("texts"),
    )
)


class TestArrays:
    """ARRAY parameters go in binary (text format escapes each element with a regex)."""

    @pytest.mark.parametrize(
        "texts",
        [
            ['{"a": "quoted \\"x\\""}', "back\\slash", "comma, {brace}", " spaced "],
            [None, "after a null"],
            [None, None],
            [],
            ["é ü 中"],
        ],
    )
    def test_any_text_round_trips(self, engine: Engine, texts: list[str | None]) -> None:
        if engine.dialect.name != "postgresql":
            pytest.skip("ARRAY is PostgreSQL's")
        with Session(engine) as session:
            (row,) = hot.rows(session, ECHO, {"texts": texts})
        assert row.texts == texts
        assert row.n == len(texts)

    def test_they_are_sent_in_binary(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            pytest.skip("ARRAY is PostgreSQL's")
        compiled = ECHO.compiled(engine.dialect, {"texts": ["x"]})
        assert "%(texts)b" in compiled.sql
        assert "%(texts)s" not in compiled.sql


class TestTuples:
    def test_plain_tuples_after_the_deferred_writes(self, engine: Engine, chain: str) -> None:
        with Session(engine) as session:
            hot.later(session, ADD, _row(chain, 5))

            found = hot.tuples(session, SOME, {"cs": [chain, "nobody"]})

            assert [tuple(row) for row in found] == [(chain,)]
            session.rollback()

    def test_refused_for_columns_that_need_processing(self, engine: Engine, chain: str) -> None:
        if engine.dialect.name != "postgresql":
            pytest.skip("on SQLite, SQLAlchemy runs the statement and processes its rows")
        with Session(engine) as session, pytest.raises(TypeError):
            hot.tuples(session, READ, {"c": chain})  # updated_at: a UTC instant
