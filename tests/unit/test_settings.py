"""Settings from the environment: validated once, refused loudly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.upper().startswith("IWRS_"):
            monkeypatch.delenv(name)


class TestSettings:
    def test_default_database_is_a_sqlite_file_in_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)

        assert Settings().database_url == f"sqlite:///{tmp_path.resolve() / 'iwrs.db'}"

    def test_unknown_backend_refused(self) -> None:
        with pytest.raises(ValidationError, match="database_url"):
            Settings(database_url="mysql://x")

    @pytest.mark.parametrize("port", ["abc", "0"])
    def test_bad_port_from_environment_refused(
        self, monkeypatch: pytest.MonkeyPatch, port: str
    ) -> None:
        monkeypatch.setenv("IWRS_PORT", port)

        with pytest.raises(ValidationError, match="port"):
            Settings()

    def test_environment_is_read_with_its_prefix(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("IWRS_PORT", "8443")
        monkeypatch.setenv("IWRS_LOG_LEVEL", "debug")

        settings = Settings()

        assert (settings.port, settings.log_level) == (8443, "DEBUG")
