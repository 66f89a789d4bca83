"""`iwrs keys`: rotate and status, run in-process against a fresh database."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from app.adapters.crypto.keyring import ACTIVE_FILE, SIGNING_FILE
from tests.cli.conftest import run
from tests.conftest import STUDIES_DIR


@pytest.fixture
def ready(env: dict[str, str]) -> dict[str, str]:
    """Keys, a migrated database and both example studies with their lists."""
    assert run(env, "keys", "init")[0] == 0
    assert run(env, "db", "upgrade")[0] == 0
    for name in ("iris-7a", "iris-7b"):
        code, output = run(env, "studies", "load", str(STUDIES_DIR / f"{name}.toml"))
        assert code == 0, output
        code, output = run(env, "lists", "generate", "--study", name, "--no-kits")
        assert code == 0, output
    return env


def keys_dir(env: dict[str, str]) -> Path:
    return Path(env["IWRS_KEYS_DIR"])


class TestStatus:
    def test_says_which_studies_each_key_opens(self, ready: dict[str, str]) -> None:
        kid = (keys_dir(ready) / ACTIVE_FILE).read_text()
        code, output = run(ready, "keys", "status")
        assert code == 0, output
        assert f"active key-encryption key: {kid}" in output
        assert f"{kid} opens: iris-7a (DEK v1), iris-7b (DEK v1)" in output
        assert f"0600  kek-{kid}.key" in output
        assert "the keys are in order" in output

    def test_before_any_database(self, env: dict[str, str]) -> None:
        run(env, "keys", "init")
        code, output = run(env, "keys", "status")
        assert code == 0, output
        assert "not checked" in output

    def test_a_file_readable_by_others(self, ready: dict[str, str]) -> None:
        (keys_dir(ready) / SIGNING_FILE).chmod(0o644)
        code, output = run(ready, "keys", "status")
        assert code == 1
        assert "chmod 600" in output

    def test_a_wrong_key_does_not_open_the_studies(self, ready: dict[str, str]) -> None:
        kid = (keys_dir(ready) / ACTIVE_FILE).read_text()
        path = keys_dir(ready) / f"kek-{kid}.key"
        path.write_bytes(base64.b64encode(secrets.token_bytes(32)))
        code, output = run(ready, "keys", "status")
        assert code == 1
        assert f"{kid} opens: no study" in output
        assert "iris-7a (DEK v1) is wrapped by" in output

    def test_keys_from_the_environment(self, ready: dict[str, str]) -> None:
        directory = keys_dir(ready)
        kid = (directory / ACTIVE_FILE).read_text()
        env = {
            **ready,
            "IWRS_KEYS_DIR": str(directory.parent / "empty"),
            "IWRS_KEK": (directory / f"kek-{kid}.key").read_text(),
            "IWRS_KEK_ID": kid,
            "IWRS_TOKEN_SIGNING_KEY": (directory / SIGNING_FILE).read_text(),
        }
        code, output = run(env, "keys", "status")
        assert code == 0, output
        assert "key-encryption key from the environment" in output
        assert f"{kid} opens: iris-7a (DEK v1), iris-7b (DEK v1)" in output
        assert env["IWRS_KEK"] not in output
        code, output = run(env, "studies", "list")
        assert code == 0, output
        assert "iris-7b" in output


class TestRotate:
    def test_rotate_then_everything_opens(self, ready: dict[str, str]) -> None:
        directory = keys_dir(ready)
        old = (directory / ACTIVE_FILE).read_text()
        code, output = run(ready, "keys", "rotate")
        assert code == 0, output
        new = (directory / ACTIVE_FILE).read_text()
        assert new != old
        assert f"new key-encryption key {new} is active" in output
        assert "iris-7a, iris-7b" in output
        assert (directory / f"kek-{old}.key.retired").exists()
        assert not (directory / f"kek-{old}.key").exists()
        assert oct((directory / f"kek-{new}.key").stat().st_mode & 0o777) == "0o600"

        code, output = run(ready, "keys", "status")
        assert code == 0, output
        assert f"{new} opens: iris-7a (DEK v1), iris-7b (DEK v1)" in output
        assert f"{old}: retired (not loaded)" in output
        assert f"{old} opens: no study" in output
        code, output = run(ready, "studies", "list")
        assert code == 0, output
        assert "iris-7a" in output
        code, output = run(ready, "audit", "verify")
        assert code == 0, output

    def test_refused_when_the_key_comes_from_the_environment(self, ready: dict[str, str]) -> None:
        env = {**ready, "IWRS_KEK": base64.b64encode(bytes(32)).decode(), "IWRS_KEK_ID": "k"}
        code, output = run(env, "keys", "rotate")
        assert code == 1
        assert "IWRS_KEK" in output
        assert len(list(keys_dir(ready).glob("kek-*.key"))) == 1

    def test_without_keys(self, env: dict[str, str]) -> None:
        run(env, "db", "upgrade")
        code, output = run(env, "keys", "rotate")
        assert code == 1
        assert "iwrs keys init" in output
