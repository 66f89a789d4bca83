"""Pocock-Simon minimization: scores, the biased coin, unequal ratios, factors counted once."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.minimization import MinimizationDecision, minimize
from app.domain.randomization import SeededStream

SEED = bytes(range(32))
Counts = dict[tuple[str, str], dict[str, int]]


class FixedDraw(SeededStream):
    """A stream whose random() is set by the test."""

    __slots__ = ("_value",)

    def __init__(self, value: float) -> None:
        super().__init__(SEED, "fixed")
        self._value = value

    def random(self) -> float:
        return self._value


def two_factor_counts() -> Counts:
    return {
        ("sex", "F"): {"A": 3, "B": 2},
        ("sex", "M"): {"A": 1, "B": 1},
        ("site", "S1"): {"A": 1, "B": 2},
        ("site", "S2"): {"A": 0, "B": 0},
    }


def decide(stream: SeededStream, factors: list[tuple[str, float]]) -> MinimizationDecision:
    return minimize(
        {"A": 1, "B": 1},
        factors,
        {"sex": "F", "site": "S1"},
        two_factor_counts(),
        "range",
        0.8,
        stream,
    )


class TestHandComputedDecision:
    # Subject F at S1. If A: sex F gives A4 B2 (range 2, weight 2 -> 4), site S1 gives A2 B2
    # (0): score 4. If B: sex 3/3 (0), site 1/3 (range 2, weight 1): score 2. B is lower, so
    # B has 0.8 and A 0.2; in arm order A then B, a draw below 0.2 takes A.
    FACTORS: ClassVar[list[tuple[str, float]]] = [("sex", 2.0), ("site", 1.0)]

    def test_scores_and_probabilities(self) -> None:
        decision = decide(FixedDraw(0.5), self.FACTORS)

        assert decision.scores == {"A": 4.0, "B": 2.0}
        assert decision.probabilities == pytest.approx({"A": 0.2, "B": 0.8})
        assert decision.counts_used == {
            ("sex", "F"): {"A": 3, "B": 2},
            ("site", "S1"): {"A": 1, "B": 2},
        }
        assert decision.draw == 0.5
        assert decision.arm == "B"

    def test_low_draw_takes_the_other_arm(self) -> None:
        assert decide(FixedDraw(0.1), self.FACTORS).arm == "A"

    def test_draw_is_the_next_word_of_the_stream(self) -> None:
        first_word = SeededStream(SEED, "decide").next_word()

        decision = decide(SeededStream(SEED, "decide"), self.FACTORS)

        assert decision.draw == first_word / 2**32
        assert decision.arm == ("A" if decision.draw < 0.2 else "B")

    def test_variance_with_unequal_ratio(self) -> None:
        # 2:1, one factor, A=2 B=0 so far. If A: (3/2, 0), variance 0.5625. If B: (1, 1): 0.
        decision = minimize(
            {"A": 2, "B": 1},
            [("age", 1.0)],
            {"age": "old"},
            {("age", "old"): {"A": 2, "B": 0}, ("age", "young"): {}},
            "variance",
            0.9,
            FixedDraw(0.05),
        )

        assert decision.scores == {"A": 0.5625, "B": 0.0}
        assert decision.probabilities == pytest.approx({"A": 0.1, "B": 0.9})
        assert decision.arm == "A"

    def test_all_tied_is_equal(self) -> None:
        decision = minimize(
            {"A": 1, "B": 1, "C": 1},
            [("sex", 1.0)],
            {"sex": "F"},
            {("sex", "F"): {}, ("sex", "M"): {}},
            "range",
            0.8,
            FixedDraw(0.5),
        )

        assert decision.scores == {"A": 1.0, "B": 1.0, "C": 1.0}
        assert decision.probabilities == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3})
        assert decision.arm == "B"

    def test_ties_among_some_arms_share_p(self) -> None:
        decision = minimize(
            {"A": 1, "B": 1, "C": 1},
            [("sex", 1.0)],
            {"sex": "F"},
            {("sex", "F"): {"A": 1}},
            "range",
            0.8,
            FixedDraw(0.5),
        )

        assert decision.scores == {"A": 2.0, "B": 1.0, "C": 1.0}
        assert decision.probabilities == pytest.approx({"A": 0.2, "B": 0.4, "C": 0.4})


class TestDeterministicWithProbabilityOne:
    @settings(max_examples=200, deadline=None)
    @given(
        counts=st.lists(st.integers(0, 6), min_size=9, max_size=9),
        ratio=st.lists(st.integers(1, 3), min_size=3, max_size=3),
        label=st.text(max_size=5),
    )
    def test_the_lowest_score_arm_is_always_chosen(
        self, counts: list[int], ratio: list[int], label: str
    ) -> None:
        arms = ["A", "B", "C"]
        table: Counts = {
            ("f1", "x"): dict(zip(arms, counts[0:3], strict=True)),
            ("f2", "y"): dict(zip(arms, counts[3:6], strict=True)),
            ("site", "S1"): dict(zip(arms, counts[6:9], strict=True)),
        }

        decision = minimize(
            dict(zip(arms, ratio, strict=True)),
            [("f1", 1.0), ("f2", 0.5), ("site", 2.0)],
            {"f1": "x", "f2": "y", "site": "S1"},
            table,
            "variance",
            1.0,
            SeededStream(SEED, label),
        )

        assert decision.scores[decision.arm] == min(decision.scores.values())
        lowest = [a for a in arms if decision.scores[a] == min(decision.scores.values())]
        for arm in arms:
            expected = 1 / len(lowest) if arm in lowest else 0.0
            assert decision.probabilities[arm] == pytest.approx(expected)


class TestUnequalRatioSimulation:
    def test_three_one_one_keeps_proportions_and_margins(self) -> None:
        ratio = {"A": 3, "B": 1, "C": 1}
        levels = {"sex": ["F", "M"], "age": ["lt50", "50to70", "gt70"]}
        counts: Counts = {
            (factor, level): dict.fromkeys(ratio, 0)
            for factor, choices in levels.items()
            for level in choices
        }
        subjects = SeededStream(SEED, "subjects")
        stream = SeededStream(SEED, "iris-7a|uat|minimization")
        allocated: Counter[str] = Counter()

        for _ in range(500):
            subject = {f: ls[subjects.randbelow(len(ls))] for f, ls in levels.items()}
            decision = minimize(
                ratio, [("sex", 1.0), ("age", 1.0)], subject, counts, "range", 0.8, stream
            )
            allocated[decision.arm] += 1
            for factor, level in subject.items():
                counts[(factor, level)][decision.arm] += 1

        assert allocated["A"] / 500 == pytest.approx(0.6, abs=0.03)
        assert allocated["B"] / 500 == pytest.approx(0.2, abs=0.03)
        assert allocated["C"] / 500 == pytest.approx(0.2, abs=0.03)
        for by_arm in counts.values():
            normalised = [by_arm[arm] / ratio[arm] for arm in ratio]
            assert max(normalised) - min(normalised) <= 8


class TestFactorsCountedOnce:
    def test_site_given_twice_decides_as_once(self) -> None:
        once = decide(SeededStream(SEED, "dup"), [("site", 1.0), ("sex", 1.0)])
        twice = decide(SeededStream(SEED, "dup"), [("site", 1.0), ("sex", 1.0), ("site", 1.0)])

        assert twice == once
        assert list(twice.counts_used) == [("site", "S1"), ("sex", "F")]

    def test_same_code_with_two_weights_refused(self) -> None:
        with pytest.raises(ValueError, match="twice with different weights"):
            decide(FixedDraw(0.5), [("site", 1.0), ("site", 2.0)])


class TestValidation:
    def test_unknown_level(self) -> None:
        with pytest.raises(ValueError, match="unknown level 'X' for factor 'sex'"):
            minimize(
                {"A": 1, "B": 1},
                [("sex", 1.0)],
                {"sex": "X"},
                two_factor_counts(),
                "range",
                0.8,
                FixedDraw(0.5),
            )

    def test_known_levels_given_apart_from_counts(self) -> None:
        levels = {"sex": ("F", "M"), "site": ("S1", "S2", "S3")}

        decision = minimize(
            {"A": 1, "B": 1},
            [("sex", 1.0), ("site", 1.0)],
            {"sex": "M", "site": "S3"},
            {},
            "range",
            0.8,
            FixedDraw(0.5),
            levels=levels,
        )

        assert decision.counts_used == {
            ("sex", "M"): {"A": 0, "B": 0},
            ("site", "S3"): {"A": 0, "B": 0},
        }
        with pytest.raises(ValueError, match="unknown level 'S9' for factor 'site'"):
            minimize(
                {"A": 1, "B": 1},
                [("site", 1.0)],
                {"site": "S9"},
                two_factor_counts(),
                "range",
                0.8,
                FixedDraw(0.5),
                levels=levels,
            )

    def test_subject_without_a_level(self) -> None:
        with pytest.raises(ValueError, match="no level for factor 'site'"):
            minimize(
                {"A": 1, "B": 1},
                [("site", 1.0)],
                {"sex": "F"},
                two_factor_counts(),
                "range",
                0.8,
                FixedDraw(0.5),
            )

    @pytest.mark.parametrize(
        ("ratio", "factors", "probability", "message"),
        [
            ({"A": 1}, [("sex", 1.0)], 0.8, "two arms"),
            ({"A": 1, "B": 0}, [("sex", 1.0)], 0.8, "positive integer"),
            ({"A": 1, "B": 1}, [], 0.8, "at least one factor"),
            ({"A": 1, "B": 1}, [("sex", 0.0)], 0.8, "weight must be positive"),
            ({"A": 1, "B": 1}, [("sex", float("nan"))], 0.8, "weight must be positive"),
            ({"A": 1, "B": 1}, [("sex", 1.0)], 1.5, "between 0 and 1"),
        ],
    )
    def test_bad_parameters(
        self,
        ratio: dict[str, int],
        factors: list[tuple[str, float]],
        probability: float,
        message: str,
    ) -> None:
        with pytest.raises(ValueError, match=message):
            minimize(
                ratio,
                factors,
                {"sex": "F"},
                two_factor_counts(),
                "range",
                probability,
                FixedDraw(0.5),
            )

    def test_counts_for_an_unknown_arm(self) -> None:
        with pytest.raises(ValueError, match="not in the ratio"):
            minimize(
                {"A": 1, "C": 1},
                [("sex", 1.0)],
                {"sex": "F"},
                two_factor_counts(),
                "range",
                0.8,
                FixedDraw(0.5),
            )
