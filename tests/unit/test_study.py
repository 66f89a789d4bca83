"""The study definition's cross-field rules and what counts as an allocation change."""

from __future__ import annotations

from typing import Any

import pytest

from app.adapters.studyfiles.codec import read_study_file
from app.domain.study import Problem, allocation_changes, study_problems
from tests.builders import STUDIES_DIR, del_path, make_study, set_path, study_document


def problems_of(doc: dict[str, Any]) -> list[Problem]:
    return study_problems(make_study(doc))


def only_problem_at(problems: list[Problem], path: str) -> Problem:
    at_path = [p for p in problems if p.path == path]
    assert len(at_path) == 1, f"expected one problem at {path!r}, got {problems}"
    return at_path[0]


class TestExampleStudies:
    @pytest.mark.parametrize("name", ["iris-7a", "iris-7b"])
    def test_example_file_has_no_problems(self, name: str) -> None:
        study, _document, sha = read_study_file(STUDIES_DIR / f"{name}.toml")

        assert study.slug == name
        assert study_problems(study) == []
        assert len(sha) == 64


class TestStudyProblems:
    def test_arm_without_ratio(self) -> None:
        doc = del_path(study_document(), "allocation_ratio.CYT107_BIW")

        problem = only_problem_at(problems_of(doc), "allocation_ratio")

        assert problem.reason == "arm 'CYT107_BIW' has no ratio"

    def test_ratio_for_unknown_arm(self) -> None:
        doc = set_path(study_document(), "allocation_ratio.GHOST", 1)

        problem = only_problem_at(problems_of(doc), "allocation_ratio.GHOST")

        assert "not an arm" in problem.reason

    def test_block_size_not_multiple_of_ratio_sum(self) -> None:
        doc = set_path(study_document(), "randomization.block_sizes", [3, 4])

        problems = problems_of(doc)

        assert problems == [
            Problem("randomization.block_sizes", "4 is not a multiple of the ratio sum 3")
        ]

    def test_missing_dispensing_cell(self) -> None:
        doc = del_path(study_document(), "dispensing.kit_types.CYT107_QW.D4")

        problem = only_problem_at(problems_of(doc), "dispensing.kit_types.CYT107_QW.D4")

        assert "no kit type" in problem.reason

    def test_unknown_kit_type_in_dispensing(self) -> None:
        doc = set_path(study_document(), "dispensing.kit_types.PLACEBO.D1", "KT_GHOST")

        problem = only_problem_at(problems_of(doc), "dispensing.kit_types.PLACEBO.D1")

        assert problem.reason == "unknown kit type 'KT_GHOST'"

    def test_kit_type_never_dispensed(self) -> None:
        doc = study_document()
        doc["kit_types"].append({"code": "KT_SPARE", "description": "Spare vial kit"})
        set_path(doc, "supply.levels.KT_SPARE", {"initial": 4, "trigger": 2, "resupply": 4})

        assert problems_of(doc) == [Problem("kit_types", "kit type 'KT_SPARE' is never dispensed")]

    def test_overlapping_weight_bands(self) -> None:
        doc = set_path(study_document(), "dispensing.weight_bands[1].min_kg", 55)

        problem = only_problem_at(problems_of(doc), "dispensing.weight_bands")

        assert problem.reason == "bands overlap at 55 kg"

    def test_gap_between_weight_bands(self) -> None:
        doc = set_path(study_document(), "dispensing.weight_bands[1].min_kg", 65)

        problem = only_problem_at(problems_of(doc), "dispensing.weight_bands")

        assert problem.reason == "gap between 60 and 65 kg"

    def test_site_with_unknown_depot(self) -> None:
        doc = set_path(study_document(), "sites[2].depot", "NOWHERE")

        problem = only_problem_at(problems_of(doc), "sites[2].depot")

        assert problem.reason == "unknown depot 'NOWHERE'"

    def test_visits_not_in_strictly_increasing_day(self) -> None:
        doc = set_path(study_document(), "visits[2].day", 2)

        problem = only_problem_at(problems_of(doc), "visits")

        assert "strictly increasing day" in problem.reason

    def test_role_that_may_never_unblind(self) -> None:
        doc = study_document()
        doc["unblinding"]["roles"].append("pharmacist")

        problem = only_problem_at(problems_of(doc), "unblinding.roles")

        assert problem.reason == "role 'pharmacist' may never unblind"

    def test_minimization_with_unknown_factor(self) -> None:
        minimization = {"factors": [{"factor": "shock"}, {"factor": "site"}, {"factor": "sex"}]}
        doc = set_path(
            study_document(),
            "randomization",
            {"method": "minimization", "minimization": minimization},
        )

        problems = problems_of(doc)

        assert problems == [
            Problem("randomization.minimization.factors[2].factor", "unknown factor 'sex'")
        ]

    def test_supply_trigger_not_below_resupply(self) -> None:
        doc = set_path(study_document(), "supply.levels.KT_IL7.trigger", 16)

        problem = only_problem_at(problems_of(doc), "supply.levels.KT_IL7")

        assert "trigger must be below the resupply level" in problem.reason

    def test_factor_named_site(self) -> None:
        doc = set_path(study_document(), "stratification_factors[1].code", "site")

        problem = only_problem_at(problems_of(doc), "stratification_factors[1].code")

        assert "reserved" in problem.reason
        assert "stratify_by_site" in problem.reason

    @pytest.mark.parametrize(
        ("path", "list_path", "code"),
        [
            ("sites[1].code", "sites", "FR01"),
            ("stratification_factors[0].levels[1].code", "stratification_factors[0].levels", "yes"),
        ],
        ids=["sites", "levels"],
    )
    def test_duplicate_codes(self, path: str, list_path: str, code: str) -> None:
        doc = set_path(study_document(), path, code)

        problem = only_problem_at(problems_of(doc), list_path)

        assert problem.reason == f"code {code!r} appears more than once"

    def test_every_problem_is_reported_at_once(self) -> None:
        doc = study_document()
        set_path(doc, "sites[0].depot", "NOWHERE")
        set_path(doc, "randomization.block_sizes", [4])

        paths = [p.path for p in problems_of(doc)]

        assert paths == ["sites[0].depot", "randomization.block_sizes"]


class TestAllocationChanges:
    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("arms[0].label", "Matching placebo"),
            ("visits[1].window_after", 2),
            ("supply.levels.KT_IL7.resupply", 24),
        ],
        ids=["arm-label", "visit-window", "supply-level"],
    )
    def test_change_that_keeps_allocation(self, path: str, value: object) -> None:
        new = make_study(set_path(study_document(), path, value))

        assert allocation_changes(make_study(), new) == []

    def test_arm_added(self) -> None:
        doc = study_document()
        doc["arms"].append({"code": "CYT107_QD", "label": "CYT107 daily"})
        set_path(doc, "allocation_ratio.CYT107_QD", 1)

        changes = allocation_changes(make_study(), make_study(doc))

        assert changes[0] == (
            "arms ['PLACEBO', 'CYT107_QW', 'CYT107_BIW'] -> "
            "['PLACEBO', 'CYT107_QW', 'CYT107_BIW', 'CYT107_QD']"
        )
        assert "allocation ratio" in changes

    def test_ratio_changed(self) -> None:
        doc = set_path(study_document(), "allocation_ratio.PLACEBO", 2)

        assert allocation_changes(make_study(), make_study(doc)) == ["allocation ratio"]

    def test_factor_level_added(self) -> None:
        doc = study_document()
        doc["stratification_factors"][1]["levels"].append({"code": "ge80", "label": "80+"})

        changes = allocation_changes(make_study(), make_study(doc))

        assert changes == ["stratification factors or their levels"]

    def test_method_changed(self) -> None:
        doc = set_path(
            study_document(),
            "randomization",
            {"method": "minimization", "minimization": {"factors": [{"factor": "shock"}]}},
        )

        changes = allocation_changes(make_study(), make_study(doc))

        assert "randomization method permuted_block -> minimization" in changes

    def test_block_sizes_changed(self) -> None:
        doc = set_path(study_document(), "randomization.block_sizes", [6])

        changes = allocation_changes(make_study(), make_study(doc))

        assert changes == [
            "randomization parameters (block sizes, site stratification, minimization)"
        ]
