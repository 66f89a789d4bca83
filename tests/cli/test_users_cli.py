"""`iwrs users create|list|disable|reset` on a fresh database."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import run
from tests.conftest import STUDIES_DIR


@pytest.fixture
def ready(env: dict[str, str]) -> dict[str, str]:
    assert run(env, "keys", "init")[0] == 0
    assert run(env, "db", "upgrade")[0] == 0
    code, output = run(env, "studies", "load", str(STUDIES_DIR / "iris-7a.toml"))
    assert code == 0, output
    return env


def create(env: dict[str, str], *args: str) -> tuple[int, str]:
    return run(env, "users", "create", *args)


class TestUsers:
    def test_create_prints_the_enrolment_code_once(self, ready: dict[str, str]) -> None:
        code, output = create(
            ready,
            "--study",
            "iris-7a",
            "--role",
            "pharmacist",
            "--site",
            "FR01",
            "--email",
            "Pharmacie@CHU.example.fr",
            "--json",
        )
        assert code == 0, output
        created = json.loads(output)
        assert created["email"] == "pharmacie@chu.example.fr"
        assert len(created["enrolment_code"]) == 19
        code, listing = run(ready, "users", "list")
        assert code == 0
        assert "pharmacie@chu.example.fr" in listing
        assert "FR01" in listing
        assert "enrolment pending" in listing
        assert created["enrolment_code"] not in listing

    def test_an_admin_may_be_granted_some_studies(self, ready: dict[str, str]) -> None:
        """Deployment scripts pass --study for every role: an admin granted those studies."""
        code, output = create(
            ready, "--study", "iris-7a", "--role", "admin", "--email", "ops@example.org"
        )
        assert code == 0, output
        code, output = create(ready, "--role", "admin", "--email", "root@example.org")
        assert code == 0, output
        code, listing = run(ready, "users", "list")
        assert code == 0
        rows = {line.split()[1]: line.split() for line in listing.splitlines() if "@" in line}
        assert rows["ops@example.org"][2:4] == ["admin", "iris-7a"]
        assert rows["root@example.org"][2:4] == ["admin", "*"]

    def test_refusals_say_why(self, ready: dict[str, str]) -> None:
        cases = [
            (("--role", "investigator", "--study", "iris-7a"), "at least one --site"),
            (("--role", "auditor", "--study", "iris-7a", "--site", "FR01"), "omit --site"),
            (("--role", "auditor", "--study", "nope"), "unknown study"),
            (("--role", "edc", "--study", "iris-7a"), "API client"),
            (("--role", "wizard", "--study", "iris-7a"), "unknown role"),
            (("--role", "auditor", "--study", "iris-7a", "--email", "not-an-address"), "e-mail"),
        ]
        for args, message in cases:
            code, output = create(ready, "--email", "someone@example.org", *args)
            assert code != 0, args
            assert message in output, (args, output)

    def test_disable_then_reset(self, ready: dict[str, str]) -> None:
        assert (
            create(
                ready, "--study", "iris-7a", "--role", "auditor", "--email", "audit@example.org"
            )[0]
            == 0
        )
        code, output = run(ready, "users", "disable", "audit@example.org", "--reason", "left")
        assert code == 0, output
        assert "disabled" in run(ready, "users", "list")[1]
        code, output = run(
            ready, "users", "reset", "audit@example.org", "--reason", "back", "--json"
        )
        assert code == 0, output
        assert json.loads(output)["enrolment_code"]
        assert "enrolment pending" in run(ready, "users", "list")[1]
        assert run(ready, "audit", "verify")[0] == 0
