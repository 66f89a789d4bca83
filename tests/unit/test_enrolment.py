"""Enrolment caps' pure rules: targets, limits, which cap governs a subject, the verdict of
one more randomization, the status counts; and keeping a site's stored activation."""

from __future__ import annotations

import pytest

from app.adapters.studyfiles.codec import read_study_file
from app.domain.enrolment import (
    CapScope,
    Enrollee,
    EnrolmentCap,
    InvalidEnrolmentCap,
    ReasonRequired,
    Verdict,
    canonical_target,
    check_limits,
    governs,
    require_reason,
    state,
    tally,
    verdict,
)
from app.services.enrolment import keep_activation, with_activation
from app.services.ports import StoredStudy
from tests.builders import STUDIES_DIR

STUDY, DOCUMENT, SHA = read_study_file(STUDIES_DIR / "iris-7a.toml")
YES = {"shock": "yes", "age": "lt65"}
NO = {"shock": "no", "age": "ge65"}


def cap(
    scope: CapScope, target: str = "", warning: int | None = None, hard: int | None = None
) -> EnrolmentCap:
    return EnrolmentCap(scope, target, warning, hard)


class TestTargets:
    @pytest.mark.parametrize(
        ("scope", "given", "stored"),
        [
            (CapScope.STUDY, "", ""),
            (CapScope.COUNTRY, "fr", "FR"),
            (CapScope.SITE, "FR02", "FR02"),
            (CapScope.STRATUM, "age=ge65|shock=no", "shock=no|age=ge65"),
            (CapScope.STRATUM, "FR01|age=lt65|shock=yes", "FR01|shock=yes|age=lt65"),
        ],
    )
    def test_canonical(self, scope: CapScope, given: str, stored: str) -> None:
        assert canonical_target(STUDY, scope, given) == stored

    @pytest.mark.parametrize(
        ("scope", "given"),
        [
            (CapScope.STUDY, "FR"),
            (CapScope.COUNTRY, "US"),
            (CapScope.SITE, "US01"),
            (CapScope.STRATUM, "shock=yes"),
            (CapScope.STRATUM, "shock=yes|shock=no|age=lt65"),
            (CapScope.STRATUM, "shock=yes|age=old"),
            (CapScope.STRATUM, "US01|shock=yes|age=lt65"),
            (CapScope.STRATUM, "colour=red|shock=yes|age=lt65"),
        ],
    )
    def test_unknown_places_refused(self, scope: CapScope, given: str) -> None:
        with pytest.raises(InvalidEnrolmentCap):
            canonical_target(STUDY, scope, given)


class TestLimits:
    @pytest.mark.parametrize(
        ("warning", "hard"), [(None, None), (0, 5), (6, 5), (None, 0), (-1, None)]
    )
    def test_refused(self, warning: int | None, hard: int | None) -> None:
        with pytest.raises(InvalidEnrolmentCap):
            check_limits(warning, hard)

    @pytest.mark.parametrize(("warning", "hard"), [(None, 5), (4, None), (5, 5), (1, 2)])
    def test_accepted(self, warning: int | None, hard: int | None) -> None:
        check_limits(warning, hard)

    def test_reason(self) -> None:
        assert require_reason("  met  ") == "met"
        with pytest.raises(ReasonRequired):
            require_reason("  ")


class TestGoverns:
    def test_scopes(self) -> None:
        here = Enrollee("FR01", "FR", YES)
        assert governs(cap(CapScope.STUDY), here)
        assert governs(cap(CapScope.COUNTRY, "FR"), here)
        assert not governs(cap(CapScope.COUNTRY, "US"), here)
        assert governs(cap(CapScope.SITE, "FR01"), here)
        assert not governs(cap(CapScope.SITE, "FR02"), here)
        assert governs(cap(CapScope.STRATUM, "shock=yes|age=lt65"), here)
        assert not governs(cap(CapScope.STRATUM, "shock=no|age=ge65"), here)
        assert governs(cap(CapScope.STRATUM, "FR01|shock=yes|age=lt65"), here)
        assert not governs(cap(CapScope.STRATUM, "FR02|shock=yes|age=lt65"), here)


class TestVerdict:
    def test_refused_at_the_cap_warned_once_at_the_threshold(self) -> None:
        rule = cap(CapScope.SITE, "FR01", warning=3, hard=5)
        assert [verdict(rule, n) for n in range(7)] == [
            None,
            None,
            Verdict.WARN,  # the third randomized subject crosses the threshold
            None,
            None,
            Verdict.REFUSE,
            Verdict.REFUSE,
        ]

    def test_states(self) -> None:
        rule = cap(CapScope.STUDY, warning=2, hard=3)
        assert [state(rule, n) for n in range(5)] == [
            "open",
            "open",
            "warning",
            "reached",
            "reached",
        ]

    def test_a_warning_alone_never_refuses(self) -> None:
        rule = cap(CapScope.STUDY, warning=1)
        assert verdict(rule, 0) is Verdict.WARN
        assert verdict(rule, 100) is None


def test_tally_counts_by_place_never_by_arm() -> None:
    counts = tally(
        [Enrollee("FR01", "FR", YES), Enrollee("FR02", "FR", NO), Enrollee("FR01", "FR", NO)],
        ["shock", "age"],
    )
    assert counts.total == 3
    assert counts.by_country == {"FR": 3}
    assert counts.by_site == {"FR01": 2, "FR02": 1}
    assert counts.by_stratum == {"shock=no|age=ge65": 2, "shock=yes|age=lt65": 1}


class TestActivation:
    def test_with_activation_changes_the_study_and_its_document(self) -> None:
        study, document = with_activation(STUDY, DOCUMENT, {"FR04": True})
        assert study.site("FR04").active  # type: ignore[union-attr]
        assert [s["active"] for s in document["sites"] if s["code"] == "FR04"] == [True]
        assert [s["active"] for s in DOCUMENT["sites"] if s["code"] == "FR04"] == [False]

    def test_a_new_file_keeps_the_stored_activation(self) -> None:
        activated, document = with_activation(STUDY, DOCUMENT, {"FR04": True, "FR01": False})
        stored = StoredStudy("iris-7a", 2, SHA, activated, document)
        study, merged, kept = keep_activation(stored, STUDY, DOCUMENT)
        assert kept == ("FR01", "FR04")
        assert merged == document
        assert [s.active for s in study.sites] == [s.active for s in activated.sites]
