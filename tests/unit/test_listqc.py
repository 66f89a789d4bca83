"""List QC on hand-made lists, and regeneration from the seed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.domain.listqc import qc_report, regenerate_and_compare
from app.domain.randomization import Slot, generate_lists

SEED = bytes(range(32))
RATIO = {"PLACEBO": 1, "CYT107_QW": 1, "CYT107_BIW": 1}


def slots(arms: str, block_sizes: list[int]) -> list[Slot]:
    """A list from one letter per slot, cut into blocks of the given sizes."""
    made: list[Slot] = []
    for block, size in enumerate(block_sizes, start=1):
        for arm in arms[len(made) : len(made) + size]:
            made.append(Slot(len(made) + 1, block, size, arm))
    return made


class TestStratumQC:
    # ABBA|BAAB with 1:1. Guesses (arm most behind, 1/2 when tied): A tied .5, B behind 1,
    # tied .5, A behind 1 | tied .5, A behind 1, tied .5, B behind 1: 6 of 8 expected.
    def test_equal_ratio_known_figures(self) -> None:
        report = qc_report({"S1": slots("ABBABAAB", [4, 4])}, {"A": 1, "B": 1})

        (stratum,) = report.strata
        assert stratum.length == 8
        assert stratum.counts == {"A": 4, "B": 4}
        assert [(b.block, b.counts, b.balanced) for b in stratum.blocks] == [
            (1, {"A": 2, "B": 2}, True),
            (2, {"A": 2, "B": 2}, True),
        ]
        assert stratum.block_sizes_used == {4: 2}
        assert stratum.max_imbalance == 1.0
        assert stratum.expected_correct_guesses == 6.0
        assert stratum.predictability == 0.75

    # AAB|ABA with A:2 B:1, normalised counts (A/2, B/1). Guesses: tied .5; B behind but A
    # comes 0; B behind 1; tied .5; B behind 1; A behind (1.5 < 2) 1: 4 of 6. The widest
    # prefix gap is after AA: 1 - 0.
    def test_unequal_ratio_is_normalised(self) -> None:
        report = qc_report({"S1": slots("AABABA", [3, 3])}, {"A": 2, "B": 1})

        (stratum,) = report.strata
        assert stratum.max_imbalance == 1.0
        assert stratum.expected_correct_guesses == 4.0
        assert stratum.predictability == pytest.approx(4 / 6)
        assert all(b.balanced for b in stratum.blocks)

    def test_three_way_tie_credit(self) -> None:
        report = qc_report({"S1": slots("ABC", [3])}, {"A": 1, "B": 1, "C": 1})

        # 1/3 (all tied), 1/2 (B, C behind), 1 (C behind).
        assert report.strata[0].expected_correct_guesses == pytest.approx(1 / 3 + 1 / 2 + 1)

    def test_unbalanced_and_short_blocks(self) -> None:
        made = slots("AABBAB", [2, 2, 2])[:5]  # the last block lost a slot

        stratum = qc_report({"S1": made}, {"A": 1, "B": 1}).strata[0]

        assert [b.balanced for b in stratum.blocks] == [False, False, False]
        assert [b.length for b in stratum.blocks] == [2, 2, 1]
        assert not stratum.all_blocks_balanced
        assert stratum.max_imbalance == 2.0

    def test_order_of_the_slots_does_not_matter(self) -> None:
        made = slots("ABBABAAB", [4, 4])

        forward = qc_report({"S1": made}, {"A": 1, "B": 1})
        backward = qc_report({"S1": made[::-1]}, {"A": 1, "B": 1})

        assert forward == backward

    def test_empty_list(self) -> None:
        stratum = qc_report({"S1": []}, {"A": 1, "B": 1}).strata[0]

        assert (stratum.length, stratum.predictability, stratum.max_imbalance) == (0, 0.0, 0.0)

    def test_arm_outside_the_ratio_refused(self) -> None:
        with pytest.raises(ValueError, match="not in ratio"):
            qc_report({"S1": slots("AC", [2])}, {"A": 1, "B": 1})


class TestListTotals:
    def test_totals_over_strata(self) -> None:
        report = qc_report(
            {"S2": slots("AABABA", [3, 3]), "S1": slots("ABBA", [2, 2])}, {"A": 2, "B": 1}
        )

        assert [s.stratum for s in report.strata] == ["S1", "S2"]
        assert report.length == 10
        assert report.counts == {"A": 6, "B": 4}
        assert report.block_sizes_used == {2: 2, 3: 2}
        assert report.unbalanced_blocks == 2  # S1's blocks of two cannot hold 2:1
        assert report.predictability == pytest.approx(
            sum(s.expected_correct_guesses for s in report.strata) / 10
        )

    def test_generated_lists_are_balanced_and_less_predictable_than_certain(self) -> None:
        lists = generate_lists(SEED, "iris-7a", "live", ["FR01", "FR02"], RATIO, [3, 6], 300)

        report = qc_report(lists, RATIO)

        assert report.unbalanced_blocks == 0
        assert report.max_imbalance <= 4
        assert 1 / 3 < report.predictability < 0.75


class TestRegenerateAndCompare:
    def stored(self) -> dict[str, list[Slot]]:
        return generate_lists(SEED, "iris-7a", "live", ["FR01", "FR02"], RATIO, [3, 6], 24)

    def test_untouched_lists_match(self) -> None:
        assert regenerate_and_compare(SEED, "iris-7a", "live", self.stored(), RATIO, [3, 6]) == []

    def test_swapped_arm_detected(self) -> None:
        stored = self.stored()
        first, second = (
            stored["FR02"][0],
            next(s for s in stored["FR02"] if s.arm != stored["FR02"][0].arm),
        )
        index = stored["FR02"].index(second)
        stored["FR02"][0] = replace(first, arm=second.arm)
        stored["FR02"][index] = replace(second, arm=first.arm)

        assert regenerate_and_compare(SEED, "iris-7a", "live", stored, RATIO, [3, 6]) == ["FR02"]

    def test_missing_slot_detected(self) -> None:
        stored = self.stored()
        stored["FR01"] = stored["FR01"][:-1]

        assert regenerate_and_compare(SEED, "iris-7a", "live", stored, RATIO, [3, 6]) == ["FR01"]

    def test_wrong_seed_or_mode_differs_everywhere(self) -> None:
        other = bytes(32)

        assert regenerate_and_compare(other, "iris-7a", "live", self.stored(), RATIO, [3, 6]) == [
            "FR01",
            "FR02",
        ]
        assert regenerate_and_compare(SEED, "iris-7a", "uat", self.stored(), RATIO, [3, 6]) == [
            "FR01",
            "FR02",
        ]

    def test_storage_order_does_not_matter(self) -> None:
        stored = {k: v[::-1] for k, v in self.stored().items()}

        assert regenerate_and_compare(SEED, "iris-7a", "live", stored, RATIO, [3, 6]) == []
