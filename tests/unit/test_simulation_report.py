"""`iwrs simulate`'s report: later-visit refusals and expiry waste beside the supply table."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from app.adapters.simulation.report import print_tables, summary
from app.adapters.simulation.runner import Results


def results() -> Results:
    r = Results(days=3)
    r.enrolled_by_day = {"iris-7a": [1, 2, 2]}
    r.allocations = [
        {"study": "iris-7a", "stratum": "FR01|shock=no", "arm": "PLACEBO"},
        {"study": "iris-7a", "stratum": "FR01|shock=no", "arm": "CYT107_QW"},
    ]
    r.later_visits["iris-7a"] = 40
    r.later_visits_refused["iris-7a"] = 2
    r.site_counts = {"iris-7a": {"FR01": {"at_site": 9, "expired": 3}, "FR02": {"expired": 1}}}
    r.latency["GET /x"].extend([0.01, 0.02])
    return r


def test_summary_has_the_later_visit_refusal_rate_and_expiry_waste() -> None:
    figures = summary(results())
    assert figures["later_visits"] == {
        "iris-7a": {"attempted": 40, "refused": 2, "refusal_rate": 0.05}
    }
    assert figures["expiry_waste"] == {
        "iris-7a": {"expired_at_sites": 4, "expired_at_depots": None, "left_at_sites": 9}
    }


def test_the_tables_print_the_rate_and_keep_the_others(capsys: pytest.CaptureFixture[str]) -> None:
    print_tables(results(), Console(file=io.StringIO()))  # not a terminal: printed to stdout
    text = capsys.readouterr().out
    for title in ("Balance by stratum", "Supply", "Later visits", "Latency by endpoint"):
        assert title in text
    assert "5.00%" in text
    assert "not measured" in text
