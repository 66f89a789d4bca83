"""The reliability suite runs on PostgreSQL only: skipped on a SQLite-only run, and (as every
PostgreSQL test) failing rather than skipping when IWRS_TEST_REQUIRE_POSTGRES=1 and the
server is unreachable. Each test gets a fresh database and a service of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, FreshDatabases
from tests.reliability.service import Service


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if "postgres" not in BACKENDS:
        pytest.skip("the reliability suite runs on PostgreSQL (IWRS_TEST_BACKENDS=postgres)")


@pytest.fixture
def pg_url(fresh_databases: FreshDatabases) -> str:
    return fresh_databases.create("postgres")


@pytest.fixture
def service(pg_url: str, keys_dir: Path, tmp_path: Path) -> Iterator[Service]:
    svc = Service(pg_url, keys_dir, tmp_path)
    try:
        yield svc
    finally:
        svc.close()
