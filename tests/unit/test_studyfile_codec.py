"""Reading study files: every error names the file, the field and the reason."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from app.adapters.studyfiles.codec import (
    StudyFileError,
    canonical,
    decode_stored,
    parse_document,
    read_study_file,
    to_domain,
)
from app.domain.study import DEFAULT_DISCONTINUATION_REASONS, study_problems
from tests.builders import STUDIES_DIR, set_path, study_document

EXAMPLE = (STUDIES_DIR / "iris-7a.toml").read_text(encoding="utf-8")


def write_variant(tmp_path: Path, old: str, new: str) -> Path:
    """The example file with the first `old` replaced by `new`."""
    assert old in EXAMPLE
    path = tmp_path / "study.toml"
    path.write_text(EXAMPLE.replace(old, new, 1), encoding="utf-8")
    return path


def read_error(path: Path) -> StudyFileError:
    with pytest.raises(StudyFileError) as caught:
        read_study_file(path)
    assert str(path) in str(caught.value)
    return caught.value


class TestReadStudyFileErrors:
    def test_malformed_toml(self, tmp_path: Path) -> None:
        path = write_variant(tmp_path, 'slug = "iris-7a"', "slug = ")

        error = read_error(path)

        assert "not valid TOML" in str(error)
        assert error.problems == [str(error)]

    @pytest.mark.parametrize(
        ("old", "new", "problem"),
        [
            ("[randomization]", "[randomisation]", "randomisation: Extra inputs"),
            ("active = true", "actve = true", "sites[0].actve: Extra inputs"),
            (
                "cap_per_stratum = 24",
                'cap_per_stratum = "lots"',
                "randomization.cap_per_stratum: Input should be a valid integer",
            ),
            ('protocol = "IRIS-7A"\n', "", "protocol: Field required"),
        ],
        ids=["unknown-top-level", "unknown-nested", "wrong-type", "missing-required"],
    )
    def test_shape_error_names_file_and_field(
        self, tmp_path: Path, old: str, new: str, problem: str
    ) -> None:
        path = write_variant(tmp_path, old, new)

        error = read_error(path)

        assert any(line.startswith(f"{path}: {problem}") for line in error.problems), error.problems

    def test_nonexistent_file(self, tmp_path: Path) -> None:
        error = read_error(tmp_path / "absent.toml")

        assert "no such file" in str(error)

    def test_every_shape_error_at_once(self, tmp_path: Path) -> None:
        path = write_variant(tmp_path, "active = true", "actve = true")
        path.write_text(
            path.read_text(encoding="utf-8").replace("day = 3", "day = -3"), encoding="utf-8"
        )

        error = read_error(path)

        assert [line.split(": ")[1] for line in error.problems] == [
            "sites[0].actve",
            "visits[1].day",
        ]
        assert str(error) == f"{path}: 2 problem(s)"

    def test_contradiction_names_file_and_field(self, tmp_path: Path) -> None:
        path = write_variant(tmp_path, "block_sizes = [3, 6]", "block_sizes = [3, 4]")

        error = read_error(path)

        assert error.problems == [
            f"{path}: randomization.block_sizes: 4 is not a multiple of the ratio sum 3"
        ]


class TestCanonical:
    def test_same_document_same_sha(self) -> None:
        _, raw_1, sha_1 = canonical(parse_document(study_document(), "a"))
        _, raw_2, sha_2 = canonical(parse_document(study_document(), "b"))

        assert (raw_1, sha_1) == (raw_2, sha_2)

    def test_changed_label_changes_sha(self) -> None:
        changed = set_path(study_document(), "arms[0].label", "Matching placebo")

        _, _, sha = canonical(parse_document(study_document(), "a"))
        _, _, changed_sha = canonical(parse_document(changed, "b"))

        assert changed_sha != sha

    def test_comments_and_layout_do_not_change_sha(self, tmp_path: Path) -> None:
        path = write_variant(tmp_path, "[randomization]", "# amended layout\n\n[randomization]")

        _, _, sha = read_study_file(STUDIES_DIR / "iris-7a.toml")
        _, _, reformatted_sha = read_study_file(path)

        assert reformatted_sha == sha

    def test_stored_document_decodes_to_the_same_study(self) -> None:
        doc = parse_document(study_document(), "a")
        data, raw, _ = canonical(doc)

        decoded_data, study = decode_stored(raw)

        assert decoded_data == data
        assert study == to_domain(doc)


class TestTypeShare:
    """`supply.type_share`: the share of a site's use the resupply review assumes one type
    takes (default: the design's)."""

    @pytest.mark.parametrize(("value", "share"), [(1, Fraction(1)), (0.75, Fraction(3, 4))])
    def test_read_as_a_fraction(self, value: float, share: Fraction) -> None:
        doc = study_document()
        set_path(doc, "supply.type_share", value)

        assert to_domain(parse_document(doc, "study.toml")).supply.type_share == share

    def test_absent_is_the_designs(self) -> None:
        assert to_domain(parse_document(study_document(), "x.toml")).supply.type_share is None

    @pytest.mark.parametrize("value", [0, -0.5, 1.5])
    def test_outside_zero_to_one_is_refused_naming_the_field(self, value: float) -> None:
        doc = study_document()
        set_path(doc, "supply.type_share", value)

        with pytest.raises(StudyFileError) as caught:
            parse_document(doc, "study.toml")

        assert any("supply.type_share" in p for p in caught.value.problems)


class TestDiscontinuationReasons:
    """`[subjects] discontinuation_reasons`: the reasons a subject's treatment may be
    discontinued for (default: the domain's list)."""

    def test_absent_is_the_default_list(self) -> None:
        study = to_domain(parse_document(study_document(), "x.toml"))

        assert study.discontinuation_reasons == DEFAULT_DISCONTINUATION_REASONS
        assert "other" in study.discontinuation_reasons

    def test_a_study_names_its_own(self) -> None:
        doc = study_document()
        doc["subjects"] = {"discontinuation_reasons": ["death", "sponsor_decision", "other"]}

        study = to_domain(parse_document(doc, "study.toml"))

        assert study.discontinuation_reasons == ("death", "sponsor_decision", "other")
        assert study_problems(study) == []

    @pytest.mark.parametrize("reasons", [[], ["death", "death"]])
    def test_empty_or_repeated_is_a_problem(self, reasons: list[str]) -> None:
        doc = study_document()
        doc["subjects"] = {"discontinuation_reasons": reasons}

        problems = study_problems(to_domain(parse_document(doc, "study.toml")))

        assert [p.path for p in problems] == ["subjects.discontinuation_reasons"]

    def test_an_unknown_setting_is_refused_naming_the_field(self) -> None:
        doc = study_document()
        doc["subjects"] = {"reasons": ["death"]}

        with pytest.raises(StudyFileError) as caught:
            parse_document(doc, "study.toml")

        assert any("subjects.reasons" in p for p in caught.value.problems)
