"""Inserting many rows at once: COPY on PostgreSQL, executemany elsewhere.

A kit list is 100,000 rows and an initial shipment tens of thousands; COPY writes them in
one stream inside the caller's transaction, about ten times faster than batched INSERTs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import chain, islice
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session


def insert_rows(session: Session, model: Any, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert `rows` (all with the same keys) into `model`'s table, in this transaction.

    `rows` may be a generator: on PostgreSQL each row is made while the server stores the
    ones before it (COPY streams), so the two cores share the work."""
    iterator = iter(rows)
    first = list(islice(iterator, 64))
    if not first:
        return
    table = cast(Table, model.__table__)
    connection = session.connection()
    if connection.dialect.name != "postgresql" or len(first) < 64:
        connection.execute(insert(table), [*first, *iterator])
        return
    columns = list(first[0])
    quoted = ", ".join(connection.dialect.identifier_preparer.quote(c) for c in columns)
    name = connection.dialect.identifier_preparer.format_table(table)
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        with cursor.copy(f"COPY {name} ({quoted}) FROM STDIN") as copy:
            for row in chain(first, iterator):
                copy.write_row([row[c] for c in columns])
        # Fresh statistics for the planner at once, not when autovacuum next passes: with a
        # table's statistics from before a 100,000-row load, a site's stock was read through
        # the study's index (every kit of the trial), 2.7 ms instead of 0.3 ms a dispensing.
        # ANALYZE counts this transaction's own new rows.
        cursor.execute(f"ANALYZE {name}")
