"""`iwrs keys`: rotate, status and reseal, run in-process against a fresh database."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.adapters.crypto.envelope import StudyCipher
from app.adapters.crypto.keyring import ACTIVE_FILE, SIGNING_FILE
from app.adapters.db.audit import iter_chain
from app.bootstrap import Container, bootstrap
from app.domain.sealed import ENVELOPE_TAG, LEGACY_ENVELOPE_TAG, Sealed
from app.settings import Settings
from tests.cli.conftest import run
from tests.conftest import STUDIES_DIR, TEST_ACTOR
from tests.sealed_trial import STUDIES, revealing, scripted_trial, sealed_columns, sealed_lengths


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


def _legacy_seal(
    self: StudyCipher, kind: str, record_id: str, plaintext: bytes, *, size: int | None = None
) -> Sealed:
    """How envelopes were sealed before padding (IWRS1): the value at its own length."""
    nonce = secrets.token_bytes(12)
    body = self._aead.encrypt(nonce, plaintext, f"{self._study}|{kind}|{record_id}".encode())
    return Sealed(LEGACY_ENVELOPE_TAG + self._version.to_bytes(2, "big") + nonce + body)


def _container(env: dict[str, str]) -> Container:
    settings = Settings(database_url=env["IWRS_DATABASE_URL"], keys_dir=Path(env["IWRS_KEYS_DIR"]))
    return bootstrap(settings)


def _sealed_values(env: dict[str, str]) -> dict[str, list[bytes]]:
    """Every sealed column's envelopes, in row order."""
    container = _container(env)
    try:
        with container.session_factory() as session:
            return {
                name: [
                    bytes(v)
                    for v in session.scalars(
                        select(column)
                        .where(column.is_not(None))
                        .order_by(*column.table.primary_key)
                    )
                ]
                for name, column in sealed_columns()
            }
    finally:
        container.dispose()


def _opened(env: dict[str, str]) -> dict[str, Any]:
    """What the sealed columns hold, read through the repositories (so everything opens)."""
    container = _container(env)
    found: dict[str, Any] = {}
    try:
        with container.uow(TEST_ACTOR) as uow:
            for slug in sorted(STUDIES):
                stored = uow.studies.get(slug)
                assert stored is not None
                found[f"{slug} definition"] = stored.document
                info = uow.lists.active(slug, "live")
                assert info is not None
                found[f"{slug} seed"] = uow.lists.seed(info)
                found[f"{slug} slots"] = uow.lists.slots(info)
                found[f"{slug} arms"] = sorted(
                    (s.subject_id, arm) for s, arm, _ in uow.lists.allocations(slug, "live")
                )
                kits = uow.supply.kits(slug)
                found[f"{slug} kit types"] = uow.supply.types_of(slug, [k.id for k in kits])
    finally:
        container.dispose()
    return found


@pytest.fixture
def legacy(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every study of tests.sealed_trial run through a trial by the code before padding:
    every sealed value of the database is in a legacy (IWRS1) envelope."""
    assert run(env, "keys", "init")[0] == 0
    assert run(env, "db", "upgrade")[0] == 0
    with monkeypatch.context() as patched:
        patched.setattr(StudyCipher, "seal", _legacy_seal)
        container = _container(env)
        try:
            for name in sorted(STUDIES):
                scripted_trial(container, STUDIES[name]())
        finally:
            container.dispose()
    values = _sealed_values(env)
    assert values["allocation.trace_sealed"], "the minimization study sealed its traces"
    for name, envelopes in values.items():
        if name != "web_user.totp_secret_sealed":
            assert all(e.startswith(LEGACY_ENVELOPE_TAG) for e in envelopes), name
    return env


class TestReseal:
    def test_every_legacy_envelope_is_padded_and_still_opens(self, legacy: dict[str, str]) -> None:
        before = _opened(legacy)
        code, output = run(legacy, "keys", "rotate")  # the data keys stay: they still open
        assert code == 0, output

        code, output = run(legacy, "keys", "reseal")

        assert code == 0, output
        assert "envelopes of 4 studies" in output
        for name in STUDIES:
            assert f"{name}: re-sealed" in output
        values = _sealed_values(legacy)
        for name, envelopes in values.items():
            if name != "web_user.totp_secret_sealed":
                assert all(e.startswith(ENVELOPE_TAG) for e in envelopes), name
        container = _container(legacy)
        try:
            assert revealing(sealed_lengths(container)) == []
        finally:
            container.dispose()
        assert _opened(legacy) == before
        code, output = run(legacy, "audit", "verify")
        assert code == 0, output

    def test_one_audit_event_per_study_with_counts_only(self, legacy: dict[str, str]) -> None:
        arms = {a for name in STUDIES for a in _study_codes(name)}
        assert run(legacy, "keys", "reseal")[0] == 0

        container = _container(legacy)
        try:
            with container.session_factory() as session:
                for name in STUDIES:
                    (event,) = [e for e in iter_chain(session, name) if e.action == "sealed.padded"]
                    counts = event.after["resealed"]
                    assert counts["allocation.arm_sealed"] >= 3
                    assert counts["study.definition_sealed"] == 1
                    assert all(isinstance(n, int) for n in counts.values())
                    assert not any(code in json.dumps(event.after) for code in arms)
        finally:
            container.dispose()

    def test_a_second_run_changes_nothing(self, legacy: dict[str, str]) -> None:
        assert run(legacy, "keys", "reseal")[0] == 0
        values = _sealed_values(legacy)

        code, output = run(legacy, "keys", "reseal")

        assert code == 0, output
        assert "nothing to re-seal" in output
        assert _sealed_values(legacy) == values
        container = _container(legacy)
        try:
            with container.session_factory() as session:
                for name in STUDIES:
                    padded = [e for e in iter_chain(session, name) if e.action == "sealed.padded"]
                    assert len(padded) == 1
        finally:
            container.dispose()

    def test_nothing_legacy_on_a_fresh_database(self, ready: dict[str, str]) -> None:
        code, output = run(ready, "keys", "reseal")

        assert code == 0, output
        assert "nothing to re-seal" in output


def _study_codes(name: str) -> set[str]:
    doc = STUDIES[name]()
    return {a["code"] for a in doc["arms"]} | {k["code"] for k in doc["kit_types"]}
