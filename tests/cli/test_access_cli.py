"""`iwrs clients ...`, `iwrs audit verify` and `iwrs permissions` on a fresh database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from app.adapters.db.engine import make_engine
from tests.cli.conftest import run
from tests.conftest import STUDIES_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ready(env: dict[str, str]) -> dict[str, str]:
    assert run(env, "keys", "init")[0] == 0
    assert run(env, "db", "upgrade")[0] == 0
    code, output = run(
        env, "studies", "load", str(STUDIES_DIR / "iris-7a.toml"), str(STUDIES_DIR / "iris-7b.toml")
    )
    assert code == 0, output
    return env


class TestClients:
    def test_create_json_prints_the_secret_once(self, ready: dict[str, str]) -> None:
        code, output = run(
            ready,
            "clients",
            "create",
            "--study",
            "iris-7b",
            "--role",
            "edc",
            "--name",
            "us-edc",
            "--json",
        )
        assert code == 0, output
        created = json.loads(output)
        assert set(created) == {"client_id", "client_secret"}
        code, listing = run(ready, "clients", "list")
        assert code == 0
        assert "us-edc" in listing
        assert "iris-7b" in listing
        assert created["client_secret"] not in listing

    def test_two_studies_for_the_pooled_statistician(self, ready: dict[str, str]) -> None:
        code, output = run(
            ready,
            "clients",
            "create",
            "--study",
            "iris-7a",
            "--study",
            "iris-7b",
            "--role",
            "unblinded_statistician",
            "--name",
            "stats",
        )
        assert code == 0, output
        assert "client_secret:" in output
        assert "iris-7a,iris-7b" in run(ready, "clients", "list")[1]

    def test_an_admin_given_studies_is_granted_those(self, ready: dict[str, str]) -> None:
        # Deployment scripts pass --study for every role (issue 18's contract gap).
        code, output = run(
            ready, "clients", "create", "--study", "iris-7a", "--role", "admin", "--name", "ops"
        )
        assert code == 0, output
        line = next(x for x in run(ready, "clients", "list")[1].splitlines() if "ops" in x)
        assert "iris-7a" in line
        assert "iris-7b" not in line

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--study", "iris-7a", "--role", "wizard", "--name", "x"], "unknown role 'wizard'"),
            (["--study", "iris-9", "--role", "edc", "--name", "x"], "unknown study 'iris-9'"),
            (
                ["--study", "iris-7a", "--role", "pharmacist", "--site", "US01", "--name", "x"],
                "site 'US01'",
            ),
            (
                ["--study", "iris-7a", "--role", "pharmacist", "--name", "x"],
                "needs at least one --site",
            ),
            (
                ["--study", "iris-7a", "--role", "edc", "--site", "FR01", "--name", "x"],
                "omit --site",
            ),
            (["--role", "edc", "--name", "x"], "at least one --study"),
        ],
    )
    def test_bad_requests_are_clear_errors(
        self, ready: dict[str, str], args: list[str], message: str
    ) -> None:
        code, output = run(ready, "clients", "create", *args)
        assert code == 1
        assert message in output
        assert "\tx\t" not in run(ready, "clients", "list")[1]

    def test_disable_and_rotate(self, ready: dict[str, str]) -> None:
        _, output = run(
            ready,
            "clients",
            "create",
            "--study",
            "iris-7a",
            "--role",
            "edc",
            "--name",
            "fr-edc",
            "--json",
        )
        client_id = json.loads(output)["client_id"]
        code, output = run(ready, "clients", "rotate-secret", client_id, "--json")
        assert code == 0
        assert json.loads(output)["client_id"] == client_id
        code, output = run(ready, "clients", "disable", client_id, "--reason", "vendor changed")
        assert code == 0
        assert "disabled" in output
        assert "disabled" in run(ready, "clients", "list")[1]
        code, output = run(ready, "clients", "rotate-secret", client_id)
        assert code == 1
        code, output = run(ready, "clients", "disable", "c_nobody", "--reason", "x")
        assert code == 1
        assert "no client" in output


class TestAuditVerify:
    def _tamper(self, url: str, backend: str, statement: str) -> None:
        engine = make_engine(url)
        with engine.begin() as conn:
            if backend == "postgres":
                conn.execute(
                    text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
                )
            else:
                conn.execute(text("DROP TRIGGER audit_event_no_update"))
                conn.execute(text("DROP TRIGGER audit_event_no_delete"))
            conn.execute(text(statement))
        engine.dispose()

    def test_intact_trail_verifies(self, ready: dict[str, str]) -> None:
        code, output = run(ready, "audit", "verify")
        assert code == 0, output
        assert "ok      iris-7a" in output
        assert "intact" in output

    def test_edited_event_is_named(self, ready: dict[str, str], backend: str) -> None:
        run(ready, "clients", "create", "--study", "iris-7a", "--role", "edc", "--name", "e1")
        self._tamper(
            ready["IWRS_DATABASE_URL"],
            backend,
            "UPDATE audit_event SET reason = 'nothing to see' WHERE chain = 'iris-7a' AND seq = 2",
        )
        code, output = run(ready, "audit", "verify")
        assert code == 1
        assert "chain 'iris-7a', event 2: content does not match its hash" in output
        assert "ok      iris-7b" in output

    def test_deleted_event_is_named(self, ready: dict[str, str], backend: str) -> None:
        for name in ("e1", "e2"):
            run(ready, "clients", "create", "--study", "iris-7a", "--role", "edc", "--name", name)
        self._tamper(
            ready["IWRS_DATABASE_URL"],
            backend,
            "DELETE FROM audit_event WHERE chain = 'iris-7a' AND seq = 2",
        )
        code, output = run(ready, "audit", "verify")
        assert code == 1
        assert "chain 'iris-7a', event 2: missing or reordered" in output


def test_permissions_doc_is_generated_from_the_table(env: dict[str, str]) -> None:
    code, output = run(env, "permissions")
    assert code == 0
    assert output == (ROOT / "docs" / "permissions.md").read_text(encoding="utf-8")
