"""Hot statements: the few statements every randomization and dispensing runs, sent to
PostgreSQL on the driver's own connection, with the writes nobody reads deferred so they
travel in one round trip with the next read.

Why: on the 2-core machine a statement cost about 120 us of CPU in SQLAlchemy's execution
layer, and each round trip about 100 us of system time on each side of the socket; a
randomization with its first dispensing made twenty round trips.

- `Hot(statement)` wraps a Core statement built once. On PostgreSQL it is compiled once per
  set of parameter names (and length of each expanding IN list) to psycopg's SQL, and run
  on the psycopg connection of the session's transaction, with SQLAlchemy's bind and result
  processors applied, so rows come back as SQLAlchemy would give them. A driver error is
  raised as SQLAlchemy's (IntegrityError, OperationalError...), and a lost connection is
  invalidated, as SQLAlchemy does.
- `rows(session, hot, params)`: the statement's rows. The deferred statements of the
  transaction go first, in one pipeline with it: one round trip. `tuples` is the same
  without building row objects, for columns that need no result processing.
- `later(session, hot, params)`: a write whose outcome nobody reads, deferred.
- `check_later(session, hot, params, verify)`: a read whose rows only `verify` looks at
  (it raises to refuse); deferred likewise, verified when it comes back.

The order of statements never changes: whatever is deferred is sent before any other
statement of the connection (an engine hook, installed by `install`) and before COMMIT;
a rollback (or a savepoint's) drops what was not sent. On SQLite, with no network between
the service and its database, every call runs at once through SQLAlchemy.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from weakref import WeakKeyDictionary

import psycopg
from psycopg.pq import ExecStatus
from sqlalchemy import ARRAY, Engine, event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import BindParameter

Params = Mapping[str, Any]
TUPLES_OK = ExecStatus.TUPLES_OK
Verify = Callable[[list[Any]], None]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    expanding: tuple[str, ...]
    fixed: dict[str, Any]  # literal values the statement carries (status == 'active')
    binds: dict[str, Callable[[Any], Any]]
    results: tuple[Callable[[Any], Any] | None, ...]
    row: Any  # a named tuple of the statement's columns: rows read as SQLAlchemy's Row


class Hot:
    """A Core statement built once, run as cheaply as the database allows (module doc)."""

    __slots__ = ("_compiled", "_expanding", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._expanding = tuple(
            sorted(
                b.key
                for b in statement._get_embedded_bindparams()  # type: ignore[attr-defined]
                if isinstance(b, BindParameter) and b.expanding
            )
        )
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}

    def compiled(self, dialect: Dialect, params: Params) -> _Compiled:
        shape = (tuple(sorted(params)), tuple(len(params[n]) for n in self._expanding))
        found = self._compiled.get(shape)
        if found is None:
            found = self._compiled[shape] = self._compile(dialect, params)
        return found

    def _compile(self, dialect: Dialect, params: Params) -> _Compiled:
        compiled = self.statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=list(params)
        )
        state = compiled.construct_expanded_state(dict(params))
        spread = set(_spread(params, self._expanding))
        fixed = {k: v for k, v in state.parameters.items() if k not in spread}
        columns = list(getattr(self.statement, "exported_columns", ()))
        results = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        )
        row = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
        # Bind processors (JSON, UTC instants...) by parameter name, as SQLAlchemy applies them.
        binds = {**compiled._bind_processors, **state.processors}
        sql = state.statement
        for name, bind in compiled.binds.items():
            if isinstance(bind.type, ARRAY):
                # In binary: psycopg's text format escapes each element of an array with a
                # regular expression, ten times the cost (the audit function's ten arrays
                # took about 0.8 ms of a randomization's CPU that way).
                sql = sql.replace(f"%({name})s", f"%({name})b")
        return _Compiled(sql, self._expanding, fixed, binds, results, row)

    def parameters(self, compiled: _Compiled, params: Params) -> dict[str, Any]:
        values = {**compiled.fixed, **_spread(params, compiled.expanding)}
        for name, process in compiled.binds.items():
            if name in values:
                values[name] = process(values[name])
        return values


def _spread(params: Params, expanding: Sequence[str]) -> dict[str, Any]:
    """An expanding IN list's values under the names its compiled form gives them."""
    if not expanding:
        return dict(params)
    out = {k: v for k, v in params.items() if k not in expanding}
    for name in expanding:
        for i, value in enumerate(params[name], start=1):
            out[f"{name}_{i}"] = value
    return out


@dataclass
class _Sent:
    compiled: _Compiled
    values: list[dict[str, Any]]  # one dict, or several for an executemany
    verify: Verify | None = None
    cursor: Any = None


# Deferred statements of each open connection (the weak key: a closed connection takes its
# unsent statements with it, they are never sent on another transaction).
_PENDING: WeakKeyDictionary[Connection, list[_Sent]] = WeakKeyDictionary()


def _is_postgres(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def _prepare(connection: Connection, hot: Hot, params: Params | Sequence[Params]) -> _Sent:
    many = list(params) if not isinstance(params, Mapping) else [params]
    compiled = hot.compiled(connection.dialect, many[0])
    return _Sent(compiled, [hot.parameters(compiled, p) for p in many])


def rows(session: Session, hot: Hot, params: Params) -> list[Any]:
    """The statement's rows (after whatever this transaction deferred)."""
    connection = session.connection()
    if not _is_postgres(connection):
        return list(connection.execute(hot.statement, dict(params)))
    sent = _prepare(connection, hot, params)
    _send(connection, [*_take(connection), sent])
    return _rows(sent)


def tuples(session: Session, hot: Hot, params: Params) -> list[tuple[Any, ...]]:
    """`rows` as the driver gives them, plain tuples, for a statement whose columns need no
    result processing (ints, text, bytes, dates): no row object is built per row."""
    connection = session.connection()
    if not _is_postgres(connection):
        return list(connection.execute(hot.statement, dict(params)))  # Row is a tuple
    sent = _prepare(connection, hot, params)
    if any(sent.compiled.results):
        raise TypeError("tuples() is for statements whose columns need no processing")
    _send(connection, [*_take(connection), sent])
    return _fetched(sent)


def later(session: Session, hot: Hot, params: Params | Sequence[Params]) -> None:
    """A write nobody reads the outcome of: sent with the next statement (or at commit)."""
    connection = session.connection()
    if not _is_postgres(connection):
        batch = dict(params) if isinstance(params, Mapping) else [dict(p) for p in params]
        connection.execute(hot.statement, batch)
        return
    _PENDING.setdefault(connection, []).append(_prepare(connection, hot, params))


def check_later(session: Session, hot: Hot, params: Params, verify: Verify) -> None:
    """A read only `verify` looks at (raising to refuse): sent with the next statement."""
    connection = session.connection()
    if not _is_postgres(connection):
        verify(list(connection.execute(hot.statement, dict(params))))
        return
    sent = _prepare(connection, hot, params)
    sent.verify = verify
    _PENDING.setdefault(connection, []).append(sent)


def flush(session: Session) -> None:
    """Send what this transaction deferred now (one round trip), verifying the checks."""
    if not session.in_transaction():
        return  # committed or rolled back: nothing is deferred, and no connection is taken
    connection = session.connection()
    if _is_postgres(connection):
        queued = _take(connection)
        if queued:
            _send(connection, queued)


def _take(connection: Connection) -> list[_Sent]:
    return _PENDING.pop(connection, [])


# Set by a benchmark (bench/pgbench_floor.py --show-sql) to see each round trip's statements.
trace: Callable[[list[str]], None] | None = None


def _send(connection: Connection, batch: list[_Sent], *, commit: bool = False) -> None:
    """Run the statements in order on the driver's connection, in one pipeline (one round
    trip) when there are several or a COMMIT follows them; then verify the checks."""
    if trace is not None:
        trace([sent.compiled.sql for sent in batch] + (["COMMIT"] if commit else []))
    raw = connection.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        if len(batch) == 1 and not commit:
            _execute(raw, batch[0])
        else:
            with raw.pipeline():
                for sent in batch:
                    _execute(raw, sent)
                if commit:
                    # SQLAlchemy's own commit, which follows, finds the transaction ended.
                    raw.cursor().execute(b"COMMIT")
    except psycopg.Error as error:
        _raise_as_sqlalchemy(connection, batch[-1].compiled.sql, error)
    for sent in batch:
        if sent.verify is not None:
            sent.verify(_rows(sent))


def _execute(raw: psycopg.Connection[Any], sent: _Sent) -> None:
    cursor = raw.cursor()
    if len(sent.values) == 1:
        cursor.execute(sent.compiled.sql, sent.values[0])
    else:
        cursor.executemany(sent.compiled.sql, sent.values)
    sent.cursor = cursor


def _fetched(sent: _Sent) -> list[tuple[Any, ...]]:
    """The driver's rows of a sent statement ([] for one without rows: its result status
    says so, where cursor.description would build a column object for each column)."""
    result = sent.cursor.pgresult
    if result is None or result.status != TUPLES_OK:
        return []
    found: list[tuple[Any, ...]] = sent.cursor.fetchall()
    return found


def _rows(sent: _Sent) -> list[Any]:
    found = _fetched(sent)
    processors = sent.compiled.results
    make = sent.compiled.row._make
    if not any(processors):
        return [make(row) for row in found]
    return [
        make(v if p is None else p(v) for v, p in zip(row, processors, strict=False))
        for row in found
    ]


def _raise_as_sqlalchemy(connection: Connection, sql: str, error: psycopg.Error) -> NoReturn:
    """Raise as SQLAlchemy would have: its exception class for the error, the connection
    (and on a disconnect the pool's older connections) invalidated."""
    connection._handle_dbapi_exception(error, sql, None, None, None)


def install(engine: Engine) -> None:
    """Keep the order of statements on a PostgreSQL engine: whatever a transaction deferred
    goes before its next statement and before COMMIT; a rollback drops it."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "before_cursor_execute")
    def _before(connection: Connection, *_args: Any) -> None:
        queued = _take(connection)
        if queued:
            _send(connection, queued)

    @event.listens_for(engine, "commit")
    def _commit(connection: Connection) -> None:
        queued = _take(connection)
        if queued:
            _send(connection, queued, commit=True)

    @event.listens_for(engine, "rollback")
    def _rollback(connection: Connection) -> None:
        _PENDING.pop(connection, None)

    @event.listens_for(engine, "rollback_savepoint")
    def _rollback_savepoint(connection: Connection, *_args: Any) -> None:
        _PENDING.pop(connection, None)
