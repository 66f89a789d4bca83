"""Bulk inserts (COPY on PostgreSQL) and what the planner knows afterwards."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, select, text
from sqlalchemy.orm import Session

from app.adapters.db.bulk import insert_rows

ROWS = 500


def _scratch(connection: Connection) -> SimpleNamespace:
    table = Table(
        "bulk_scratch",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("label", String(16)),
    )
    table.create(connection)
    return SimpleNamespace(__table__=table)


def test_every_row_is_stored(connection: Connection) -> None:
    model = _scratch(connection)
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        insert_rows(session, model, ({"id": i, "label": f"r{i}"} for i in range(1, ROWS + 1)))
        stored = session.execute(select(model.__table__.c.id)).scalars().all()
    assert sorted(stored) == list(range(1, ROWS + 1))


def test_postgresql_statistics_are_fresh_after_a_load(backend: str, connection: Connection) -> None:
    """A table's statistics are taken at once after a bulk load on PostgreSQL, so the next
    reads are planned for the rows it has, not for the empty table it was."""
    if backend != "postgres":
        return  # SQLite plans from its own heuristics; nothing to refresh
    model = _scratch(connection)
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        insert_rows(session, model, ({"id": i, "label": f"r{i}"} for i in range(1, ROWS + 1)))
    reltuples = connection.execute(
        text("SELECT reltuples FROM pg_class WHERE relname = 'bulk_scratch'")
    ).scalar_one()
    assert reltuples == ROWS
