"""The `iwrs` command line, run in-process against a fresh database per test."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import run
from tests.conftest import STUDIES_DIR


class TestQuickstart:
    def test_prepares_keys_database_and_both_studies(self, env: dict[str, str]) -> None:
        code, output = run(env, "quickstart", "--no-serve")
        assert code == 0, output
        assert "created key-encryption key" in output
        assert "study iris-7a: loaded" in output
        assert "study iris-7b: loaded" in output
        assert "/docs" in output
        code, output = run(env, "quickstart", "--no-serve")
        assert code == 0, output
        assert "using the existing keys" in output
        assert "iris-7a: up to date" in output
        code, output = run(env, "studies", "list")
        assert code == 0
        assert "iris-7a" in output
        assert "iris-7b" in output


class TestStudiesLoad:
    def test_malformed_file_names_file_and_field_and_loads_nothing(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        assert run(env, "keys", "init")[0] == 0
        assert run(env, "db", "upgrade")[0] == 0
        bad = tmp_path / "bad.toml"
        text = (STUDIES_DIR / "iris-7a.toml").read_text(encoding="utf-8")
        bad.write_text(text.replace("active = true", "actve = true", 1), encoding="utf-8")
        code, output = run(env, "studies", "load", str(bad))
        assert code == 1
        assert str(bad) in output
        assert "sites[0].actve" in output
        code, output = run(env, "studies", "list")
        assert code == 0
        assert "iris-7a" not in output

    def test_not_toml(self, env: dict[str, str], tmp_path: Path) -> None:
        run(env, "keys", "init")
        run(env, "db", "upgrade")
        bad = tmp_path / "broken.toml"
        bad.write_text("slug = [unclosed\n", encoding="utf-8")
        code, output = run(env, "studies", "load", str(bad))
        assert code == 1
        assert "not valid TOML" in output

    def test_load_then_update(self, env: dict[str, str], tmp_path: Path) -> None:
        run(env, "keys", "init")
        run(env, "db", "upgrade")
        assert "created" in run(env, "studies", "load", str(STUDIES_DIR / "iris-7a.toml"))[1]
        changed = tmp_path / "a.toml"
        text = (STUDIES_DIR / "iris-7a.toml").read_text(encoding="utf-8")
        changed.write_text(text.replace("trigger = 8", "trigger = 6", 1), encoding="utf-8")
        code, output = run(env, "studies", "load", str(changed))
        assert code == 0
        assert "updated to version 2 (supply)" in output


class TestOperationsErrors:
    def test_bad_environment_setting(self, env: dict[str, str]) -> None:
        code, output = run({**env, "IWRS_PORT": "eighty"}, "db", "upgrade")
        assert code == 1
        assert "IWRS_PORT" in output

    def test_unknown_database_scheme(self, env: dict[str, str]) -> None:
        code, output = run({**env, "IWRS_DATABASE_URL": "mysql://x/y"}, "db", "upgrade")
        assert code == 1
        assert "IWRS_DATABASE_URL" in output

    def test_unreachable_database(self, env: dict[str, str]) -> None:
        url = "postgresql://postgres@127.0.0.1:1/nowhere"
        code, output = run({**env, "IWRS_DATABASE_URL": url}, "db", "upgrade")
        assert code == 1
        assert "cannot use the database" in output

    def test_keys_init_refuses_to_overwrite(self, env: dict[str, str]) -> None:
        assert run(env, "keys", "init")[0] == 0
        code, output = run(env, "keys", "init")
        assert code == 1
        assert "refusing to overwrite" in output
        code, output = run(env, "keys", "status")
        assert code == 0
        assert "active key-encryption key" in output

    def test_serve_refuses_without_keys(self, env: dict[str, str]) -> None:
        code, output = run(env, "serve")
        assert code == 1
        assert "iwrs keys init" in output

    def test_serve_refuses_unmigrated_database(self, env: dict[str, str]) -> None:
        run(env, "keys", "init")
        code, output = run(env, "serve")
        assert code == 1
        assert "iwrs db upgrade" in output

    def test_db_current(self, env: dict[str, str]) -> None:
        assert run(env, "db", "current")[0] == 1
        run(env, "db", "upgrade")
        code, output = run(env, "db", "current")
        assert code == 0
        assert "code head" in output
