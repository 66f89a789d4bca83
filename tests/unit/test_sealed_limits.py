"""A study file is refused, naming the field, when something it would seal could not fit
its fixed sealed size (app.domain.study.sealing_problems)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.adapters.studyfiles.codec import StudyFileError, parse_document
from app.domain.study import (
    MAX_BLOCK_SIZE,
    MAX_MINIMIZATION_ARMS,
    MAX_MINIMIZATION_FACTORS,
    Arm,
    KitType,
    Study,
    study_problems,
)
from tests.builders import make_study, set_path, study_document


def _reasons(study: Study) -> list[str]:
    return [str(p) for p in study_problems(study)]


class TestCodes:
    def test_the_example_studies_fit(self) -> None:
        for name in ("iris-7a", "iris-7b"):
            assert study_problems(make_study(study_document(name))) == []

    def test_a_long_arm_code_is_refused_by_the_file_schema(self) -> None:
        doc = set_path(study_document(), "arms[0].code", "A" * 33)

        with pytest.raises(StudyFileError) as raised:
            parse_document(doc, "long.toml")
        assert any("arms[0].code" in p for p in raised.value.problems)

    @pytest.mark.parametrize("field", ["arms", "kit_types"])
    def test_a_long_code_is_refused_by_the_domain_too(self, field: str) -> None:
        study = make_study()
        if field == "arms":
            study = replace(study, arms=(Arm("É" * 17, "x"), *study.arms[1:]))
        else:
            study = replace(study, kit_types=(KitType("K" * 33, "x"), *study.kit_types[1:]))

        found = [r for r in _reasons(study) if r.startswith(f"{field}[0].code")]
        assert found
        assert "longer than 32 bytes, so that every sealed" in found[0]


class TestRandomization:
    def test_a_block_size_above_the_bound(self) -> None:
        doc = set_path(study_document(), "randomization.block_sizes", [3, 10_002])

        reasons = _reasons(make_study(doc))

        assert f"randomization.block_sizes: 10002 is above {MAX_BLOCK_SIZE}" in " ".join(reasons)

    def _minimization(self, arms: int, factors: int) -> list[str]:
        doc = study_document()
        codes = [f"ARM_{i}" for i in range(arms)]
        doc["arms"] = [{"code": c, "label": c} for c in codes]
        doc["allocation_ratio"] = dict.fromkeys(codes, 1)
        doc["dispensing"]["kit_types"] = {
            c: dict.fromkeys([v["code"] for v in doc["visits"]], "KT_PBO") for c in codes
        }
        doc["kit_types"] = [k for k in doc["kit_types"] if k["code"] == "KT_PBO"]
        doc["supply"]["levels"] = {"KT_PBO": doc["supply"]["levels"]["KT_PBO"]}
        doc["randomization"] = {
            "method": "minimization",
            "minimization": {"factors": [{"factor": "shock"}] * factors},
        }
        return _reasons(make_study(doc))

    def test_minimization_within_the_bounds(self) -> None:
        assert self._minimization(MAX_MINIMIZATION_ARMS, MAX_MINIMIZATION_FACTORS) == []

    def test_minimization_with_too_many_arms_or_factors(self) -> None:
        reasons = self._minimization(MAX_MINIMIZATION_ARMS + 1, MAX_MINIMIZATION_FACTORS + 1)

        assert any(r.startswith("arms: minimization allows at most") for r in reasons)
        assert any(r.startswith("randomization.minimization.factors: at most") for r in reasons)
