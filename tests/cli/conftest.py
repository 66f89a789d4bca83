"""CLI tests run `iwrs` in-process against a fresh database per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.adapters.cli.main import app
from tests.conftest import FreshDatabases


@pytest.fixture
def env(backend: str, fresh_databases: FreshDatabases, tmp_path: Path) -> dict[str, str]:
    return {
        "IWRS_DATABASE_URL": fresh_databases.create(backend),
        "IWRS_KEYS_DIR": str(tmp_path / "keys"),
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output
