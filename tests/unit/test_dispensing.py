"""Dispensing: kit choice (FEFO, window, random among equals), visit rules, weight bands."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

import pytest

from app.domain.dispensing import (
    FefoPool,
    InsufficientSupply,
    KitCandidate,
    VisitAlreadyDispensed,
    VisitNotAllowed,
    WeightOutOfRange,
    choose_kits,
    dispensable_counts,
    first_visit_servable,
    quantity_for_weight,
    visit_check,
)
from app.domain.errors import Conflict, DomainError
from app.domain.kits import SecretsRandom
from app.domain.study import Dispensing, Visit, WeightBand
from tests.builders import make_study

TODAY = date(2025, 3, 10)
DND = 30  # do-not-dispense window, days


class ScriptedRandom:
    """Returns the scripted values in turn (each taken modulo n), then zeros."""

    def __init__(self, values: Iterable[int] = ()) -> None:
        self._values = iter(values)

    def randbelow(self, n: int, /) -> int:
        return next(self._values, 0) % n


class LastRandom:
    """Always the largest value: Fisher-Yates then leaves the order untouched."""

    def randbelow(self, n: int, /) -> int:
        return n - 1


def kit(kit_id: int, days_left: int, kit_type: str = "KT_IL7") -> KitCandidate:
    return KitCandidate(kit_id, kit_type, TODAY + timedelta(days=days_left))


class TestFefoPool:
    """Many draws from one place, as for a new kit list's initial shipments."""

    def test_first_expiry_first_out_and_each_kit_once(self) -> None:
        pool = FefoPool([kit(1, 300), kit(2, 200), kit(3, 200), kit(4, 100)], TODAY, 30)
        first = pool.take("KT_IL7", 1, SecretsRandom())
        second = pool.take("KT_IL7", 2, SecretsRandom())
        assert first == [4]
        assert sorted(second) == [2, 3]
        assert pool.take("KT_IL7", 1, SecretsRandom()) == [1]
        assert pool.available("KT_IL7") == 0

    def test_a_draw_spans_expiry_groups_in_order(self) -> None:
        pool = FefoPool([kit(1, 300), kit(2, 200), kit(3, 100)], TODAY, 30)
        assert sorted(pool.take("KT_IL7", 2, SecretsRandom())) == [2, 3]

    def test_types_are_drawn_apart(self) -> None:
        pool = FefoPool([kit(1, 100, "A"), kit(2, 100, "B"), kit(3, 200, "A")], TODAY, 30)
        assert pool.available("A") == 2
        assert pool.take("B", 1, SecretsRandom()) == [2]
        assert pool.available("A") == 2
        assert pool.available("B") == 0

    def test_kits_inside_the_do_not_dispense_window_are_not_in_it(self) -> None:
        pool = FefoPool([kit(1, 10), kit(2, 31), kit(3, 30)], TODAY, 30)
        assert pool.available("KT_IL7") == 1
        assert pool.take("KT_IL7", 1, SecretsRandom()) == [2]

    def test_more_than_it_holds_is_refused_and_takes_nothing(self) -> None:
        pool = FefoPool([kit(1, 100)], TODAY, 30)
        with pytest.raises(InsufficientSupply):
            pool.take("KT_IL7", 2, SecretsRandom())
        assert pool.available("KT_IL7") == 1

    def test_random_among_equals(self) -> None:
        seen = Counter(
            FefoPool([kit(i, 100) for i in range(1, 5)], TODAY, 30).take(
                "KT_IL7", 1, SecretsRandom()
            )[0]
            for _ in range(400)
        )
        assert set(seen) == {1, 2, 3, 4}
        assert min(seen.values()) > 50  # each about 100 of 400


class TestChooseKits:
    def test_first_expiry_first_out(self) -> None:
        candidates = [kit(1, 300), kit(2, 100), kit(3, 200)]

        chosen = choose_kits(candidates, "KT_IL7", 2, TODAY, DND, SecretsRandom())

        assert chosen == [2, 3]

    def test_only_the_requested_type(self) -> None:
        candidates = [kit(1, 100, "KT_PBO"), kit(2, 300)]

        assert choose_kits(candidates, "KT_IL7", 1, TODAY, DND, SecretsRandom()) == [2]

    def test_kit_expiring_within_the_window_is_never_dispensed(self) -> None:
        candidates = [kit(1, DND), kit(2, DND - 5), kit(3, DND + 1)]

        assert choose_kits(candidates, "KT_IL7", 1, TODAY, DND, SecretsRandom()) == [3]
        with pytest.raises(InsufficientSupply):
            choose_kits(candidates, "KT_IL7", 2, TODAY, DND, SecretsRandom())

    def test_random_among_equal_expiry(self) -> None:
        candidates = [kit(9, 400), kit(1, 100), kit(2, 100), kit(3, 100)]

        untouched = choose_kits(candidates, "KT_IL7", 1, TODAY, DND, LastRandom())
        shuffled = choose_kits(candidates, "KT_IL7", 1, TODAY, DND, ScriptedRandom([0, 0]))

        assert untouched == [1]
        assert shuffled == [2]

    def test_choice_among_equals_does_not_depend_on_input_order(self) -> None:
        candidates = [kit(1, 100), kit(2, 100), kit(3, 100)]

        forward = choose_kits(candidates, "KT_IL7", 2, TODAY, DND, ScriptedRandom([1, 0]))
        backward = choose_kits(candidates[::-1], "KT_IL7", 2, TODAY, DND, ScriptedRandom([1, 0]))

        assert forward == backward

    def test_every_equal_kit_is_equally_likely(self) -> None:
        candidates = [kit(1, 100), kit(2, 100), kit(3, 100)]
        scripts = itertools.product(range(3), range(2))

        picks = Counter(
            choose_kits(candidates, "KT_IL7", 1, TODAY, DND, ScriptedRandom(s))[0] for s in scripts
        )

        assert picks == {1: 2, 2: 2, 3: 2}

    def test_earlier_group_taken_whole_then_random_in_the_next(self) -> None:
        candidates = [kit(1, 100), kit(2, 200), kit(3, 200), kit(4, 200)]

        chosen = choose_kits(candidates, "KT_IL7", 3, TODAY, DND, ScriptedRandom([0, 0]))

        assert chosen[0] == 1
        assert set(chosen[1:]) < {2, 3, 4}
        assert len(set(chosen)) == 3

    def test_insufficient_supply_names_no_kit_type(self) -> None:
        candidates = [kit(1, 100), kit(2, 100, "KT_PBO")]

        with pytest.raises(InsufficientSupply) as caught:
            choose_kits(candidates, "KT_IL7", 2, TODAY, DND, SecretsRandom())

        assert caught.value.code == "insufficient_supply"
        assert isinstance(caught.value, Conflict)
        assert "KT_" not in caught.value.detail

    def test_quantity_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            choose_kits([kit(1, 100)], "KT_IL7", 0, TODAY, DND, SecretsRandom())


class TestDispensableCounts:
    def test_counts_by_type_outside_the_window(self) -> None:
        candidates = [kit(1, 100), kit(2, DND), kit(3, 100, "KT_PBO"), kit(4, 200, "KT_PBO")]

        assert dispensable_counts(candidates, TODAY, DND) == {"KT_IL7": 1, "KT_PBO": 2}


VISITS = (
    Visit("D1", 0),
    Visit("D4", 3, window_before=1, window_after=1),
    Visit("D8", 7, window_before=1, window_after=2),
)
RANDOMIZED_ON = date(2025, 3, 1)


def on_day(day: int) -> date:
    return RANDOMIZED_ON + timedelta(days=day)


class TestVisitCheck:
    def test_first_visit_on_randomization_day(self) -> None:
        visit_check(VISITS, RANDOMIZED_ON, set(), "D1", RANDOMIZED_ON)

    @pytest.mark.parametrize("day", [2, 3, 4])
    def test_inside_the_window_edges_included(self, day: int) -> None:
        visit_check(VISITS, RANDOMIZED_ON, {"D1"}, "D4", on_day(day))

    @pytest.mark.parametrize("day", [1, 5])
    def test_outside_the_window(self, day: int) -> None:
        with pytest.raises(
            VisitNotAllowed, match="is open from 2025-03-03 to 2025-03-05"
        ) as caught:
            visit_check(VISITS, RANDOMIZED_ON, {"D1"}, "D4", on_day(day))

        assert caught.value.code == "visit_not_allowed"
        assert isinstance(caught.value, Conflict)

    def test_asymmetric_window(self) -> None:
        visit_check(VISITS, RANDOMIZED_ON, {"D1", "D4"}, "D8", on_day(9))
        with pytest.raises(VisitNotAllowed):
            visit_check(VISITS, RANDOMIZED_ON, {"D1", "D4"}, "D8", on_day(10))

    def test_previous_visit_not_dispensed(self) -> None:
        with pytest.raises(VisitNotAllowed, match="'D1'"):
            visit_check(VISITS, RANDOMIZED_ON, set(), "D4", on_day(3))

    def test_a_missed_visit_blocks_every_later_one(self) -> None:
        with pytest.raises(VisitNotAllowed, match="'D4'"):
            visit_check(VISITS, RANDOMIZED_ON, {"D1"}, "D8", on_day(7))

    def test_already_dispensed(self) -> None:
        with pytest.raises(VisitAlreadyDispensed) as caught:
            visit_check(VISITS, RANDOMIZED_ON, {"D1", "D4"}, "D4", on_day(3))

        assert caught.value.code == "visit_already_dispensed"
        assert isinstance(caught.value, Conflict)

    def test_unknown_visit(self) -> None:
        with pytest.raises(VisitNotAllowed, match="not a visit"):
            visit_check(VISITS, RANDOMIZED_ON, {"D1"}, "D99", on_day(3))

    def test_visits_are_taken_in_day_order(self) -> None:
        shuffled_visits = (VISITS[2], VISITS[0], VISITS[1])

        with pytest.raises(VisitNotAllowed, match="'D4'"):
            visit_check(shuffled_visits, RANDOMIZED_ON, {"D1"}, "D8", on_day(7))


DISPENSING = Dispensing(
    kit_type_by_arm_visit={},
    weight_bands=(
        WeightBand(Decimal(35), Decimal(60), 1),
        WeightBand(Decimal(60), Decimal(90), 2),
    ),
)


class TestQuantityForWeight:
    @pytest.mark.parametrize(
        ("weight", "quantity"),
        [("35", 1), ("59.99", 1), ("60", 2), ("60.0", 2), ("89.999", 2)],
    )
    def test_lower_bound_inclusive_upper_exclusive(self, weight: str, quantity: int) -> None:
        assert quantity_for_weight(DISPENSING, Decimal(weight)) == quantity

    @pytest.mark.parametrize("weight", ["34.99", "90", "0", "-70", "NaN", "Infinity"])
    def test_outside_every_band(self, weight: str) -> None:
        with pytest.raises(WeightOutOfRange) as caught:
            quantity_for_weight(DISPENSING, Decimal(weight))

        assert caught.value.code == "weight_out_of_range"
        assert isinstance(caught.value, DomainError)
        assert not isinstance(caught.value, Conflict)


class TestFirstVisitServable:
    # IRIS-7A at D1: PLACEBO gets KT_PBO; CYT107_QW and CYT107_BIW get KT_IL7.

    def test_every_arm_served(self) -> None:
        assert first_visit_servable(make_study(), {"KT_IL7": 2, "KT_PBO": 2}, 2)

    def test_one_arm_short_refuses_whatever_the_subject_would_get(self) -> None:
        # An active-arm subject would be served, yet the answer must not depend on the arm.
        assert not first_visit_servable(make_study(), {"KT_IL7": 50, "KT_PBO": 1}, 2)

    def test_type_shared_by_two_arms_needs_one_quantity(self) -> None:
        assert first_visit_servable(make_study(), {"KT_IL7": 3, "KT_PBO": 3}, 3)

    def test_type_absent(self) -> None:
        assert not first_visit_servable(make_study(), {"KT_IL7": 50}, 1)
