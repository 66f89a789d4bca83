"""`iwrs sites` (activate, deactivate, close, reopen) and `iwrs enrolment` (cap, show), run
in-process against a fresh database; each action audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import run
from tests.conftest import STUDIES_DIR

S = ("--study", "iris-7a")


@pytest.fixture
def ready(env: dict[str, str]) -> dict[str, str]:
    for args in (("keys", "init"), ("db", "upgrade")):
        assert run(env, *args)[0] == 0
    code, output = run(env, "studies", "load", str(STUDIES_DIR / "iris-7a.toml"))
    assert code == 0, output
    return env


class TestSites:
    def test_activate_sends_the_initial_shipment_and_the_file_no_longer_decides(
        self, ready: dict[str, str], tmp_path: Path
    ) -> None:
        code, output = run(ready, "kits", "generate", *S)
        assert code == 0, output
        assert "FR04" not in output

        code, output = run(ready, "sites", "activate", *S, "--site", "FR04")

        assert code == 0, output
        assert "FR04: active, enrolment open" in output
        assert "initial shipment SH-FR04-001: 32 kits in transit" in output
        code, output = run(ready, "sites", "activate", *S, "--site", "FR04")
        assert code == 1
        assert "is active already" in output
        changed = tmp_path / "a.toml"
        text = (STUDIES_DIR / "iris-7a.toml").read_text(encoding="utf-8")
        changed.write_text(text.replace("trigger = 8", "trigger = 6", 1), encoding="utf-8")
        code, output = run(ready, "studies", "load", str(changed))
        assert code == 0, output
        assert "kept the stored activation of FR04" in output
        assert "4/4 sites active" in run(ready, "studies", "list")[1]

    def test_close_reopen_and_deactivate_need_a_reason(self, ready: dict[str, str]) -> None:
        code, output = run(ready, "sites", "close", *S, "--site", "FR02")
        assert code == 2  # --reason is required
        code, output = run(ready, "sites", "close", *S, "--site", "FR02", "--reason", "met")
        assert code == 0, output
        assert "FR02: active, enrolment closed" in output
        code, output = run(ready, "sites", "close", *S, "--site", "FR02", "--reason", "again")
        assert code == 1
        assert "closed to enrolment already" in output
        code, output = run(ready, "sites", "reopen", *S, "--site", "FR02", "--reason", "more")
        assert code == 0, output
        assert "enrolment open" in output
        code, output = run(ready, "sites", "deactivate", *S, "--site", "FR03", "--reason", "x")
        assert code == 0, output
        assert "FR03: inactive" in output
        code, output = run(ready, "sites", "close", *S, "--site", "ZZ01", "--reason", "x")
        assert code == 1
        assert "no site 'ZZ01'" in output
        code, output = run(ready, "audit", "verify")
        assert code == 0, output


class TestEnrolment:
    def test_cap_show_and_clear(self, ready: dict[str, str]) -> None:
        code, output = run(
            ready,
            "enrolment",
            "cap",
            *S,
            "--scope",
            "site",
            "--target",
            "FR01",
            "--warning",
            "40",
            "--cap",
            "50",
        )
        assert code == 0, output
        assert "cap of site FR01: warning at 40, cap 50; 0 randomized (open)" in output
        code, output = run(
            ready, "enrolment", "cap", *S, "--scope", "stratum", "--target", "age=ge65|shock=no",
            "--cap", "5",
        )  # fmt: skip
        assert code == 0, output
        assert "stratum shock=no|age=ge65" in output
        code, output = run(ready, "enrolment", "show", *S)
        assert code == 0, output
        assert "iris-7a (live): 0 randomized" in output
        assert "FR01 (FR) active, enrolment open: 0 randomized" in output
        assert "cap of site FR01: warning at 40, cap 50" in output
        code, output = run(
            ready, "enrolment", "cap", *S, "--scope", "site", "--target", "FR01", "--clear"
        )
        assert code == 0, output
        assert "cleared" in output
        assert "cap of site FR01" not in run(ready, "enrolment", "show", *S)[1]

    def test_bad_caps(self, ready: dict[str, str]) -> None:
        code, output = run(ready, "enrolment", "cap", *S, "--scope", "site", "--target", "FR01")
        assert code == 1
        assert "give --warning" in output
        code, output = run(
            ready, "enrolment", "cap", *S, "--scope", "site", "--target", "XX01", "--cap", "3"
        )
        assert code == 1
        assert "'XX01' is not a site of study" in output
        code, output = run(ready, "enrolment", "cap", *S, "--scope", "moon", "--cap", "3")
        assert code == 1
        assert "the scope is one of study, country, site, stratum" in output
