"""Fixtures shared by every test.

Database tests run on every backend named in IWRS_TEST_BACKENDS (default: sqlite,postgres).
The PostgreSQL tests use IWRS_TEST_POSTGRES_URL (default: the local server's `test`
database) only to create a fresh database of their own, dropped at the end. When that server
is unreachable they skip and say so, unless IWRS_TEST_REQUIRE_POSTGRES=1 (as in .ci/run),
where they fail instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from app.adapters.crypto.keyring import Keyring, init_keys, load_keyring
from app.adapters.crypto.secrets_hash import Argon2Hasher
from app.adapters.db import migrate
from app.adapters.db.engine import make_engine, normalize_url
from app.bootstrap import Container, bootstrap
from app.domain.audit import Actor
from app.settings import Settings

BACKENDS = [
    b.strip()
    for b in os.environ.get("IWRS_TEST_BACKENDS", "sqlite,postgres").split(",")
    if b.strip()
]
POSTGRES_URL = os.environ.get(
    "IWRS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("IWRS_TEST_REQUIRE_POSTGRES") == "1"
TEST_ACTOR = Actor("test:operator", "operator")
STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"

_pg_problem: str | None = None
_pg_checked = False


def _postgres_unreachable() -> str | None:
    global _pg_checked, _pg_problem
    if not _pg_checked:
        _pg_checked = True
        engine = create_engine(normalize_url(POSTGRES_URL), connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            _pg_problem = f"PostgreSQL at {POSTGRES_URL} unreachable: {type(exc).__name__}"
        finally:
            engine.dispose()
    return _pg_problem


class FreshDatabases:
    """Creates empty databases (a SQLite file, or a PostgreSQL database) and drops them."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._pg_names: list[str] = []

    def create(self, backend: str) -> str:
        name = f"iwrs_test_{os.getpid()}_{secrets.token_hex(4)}"
        if backend == "sqlite":
            return f"sqlite:///{self._tmp / (name + '.db')}"
        problem = _postgres_unreachable()
        if problem:
            if REQUIRE_POSTGRES:
                pytest.fail(problem + " (IWRS_TEST_REQUIRE_POSTGRES=1)")
            pytest.skip(problem)
        admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self._pg_names.append(name)
        return (
            make_url(normalize_url(POSTGRES_URL))
            .set(database=name)
            .render_as_string(hide_password=False)
        )

    def drop_all(self) -> None:
        if not self._pg_names:
            return
        admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self._pg_names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def fresh_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshDatabases]:
    dbs = FreshDatabases(tmp_path_factory.mktemp("db"))
    yield dbs
    dbs.drop_all()


def _backend_params() -> list[object]:
    return [
        pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else [], id=b)
        for b in BACKENDS
    ]


@pytest.fixture(scope="session", params=_backend_params())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, fresh_databases: FreshDatabases) -> str:
    return fresh_databases.create(backend)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys"
    init_keys(path)
    return path


@pytest.fixture(scope="session")
def keyring(keys_dir: Path) -> Keyring:
    return load_keyring(keys_dir)


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction rolled back after the test: nothing a test writes stays."""
    conn = engine.connect()
    trans = conn.begin()
    yield conn
    trans.rollback()
    conn.close()


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return Settings(database_url=database_url, keys_dir=keys_dir, auth_failure_delay_scale=0)


# Cheap argon2 parameters: the tests check behaviour, not the cost of a guess.
FAST_HASHER = Argon2Hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def container(
    settings: Settings, engine: Engine, connection: Connection, keyring: Keyring
) -> Container:
    factory = sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    return bootstrap(
        settings,
        engine=engine,
        session_factory=factory,
        load_keys=lambda: keyring,
        hasher=FAST_HASHER,
    )
