"""Dispensing: kit choice (lot-matched, window, random), whole sets, visit rules, weight bands."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

import pytest

from app.domain.dispensing import (
    InsufficientSupply,
    KitCandidate,
    SetPool,
    VisitAlreadyDispensed,
    VisitAlreadyRecorded,
    VisitNotAllowed,
    WeightOutOfRange,
    choose_kits,
    dispensable_counts,
    quantity_for_weight,
    servable_for_every_arm,
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


def kit(kit_id: int, days_left: int, kit_type: str = "KT_IL7", lot: str = "") -> KitCandidate:
    return KitCandidate(
        kit_id, kit_type, TODAY + timedelta(days=days_left), lot=lot or f"L{days_left}"
    )


class TestSetPool:
    """A depot ships whole sets: one kit of every type, of one lot, earliest lot first."""

    TYPES = ("A", "B")

    def test_a_set_is_one_kit_of_every_type_of_one_lot(self) -> None:
        kits = [kit(1, 300, "A"), kit(2, 300, "B"), kit(3, 100, "A"), kit(4, 100, "B")]
        pool = SetPool(kits, self.TYPES, TODAY, DND)

        assert pool.available() == 2
        assert sorted(pool.take(1, SecretsRandom())) == [3, 4]
        assert sorted(pool.take(1, SecretsRandom())) == [1, 2]
        assert pool.take(1, SecretsRandom()) == []

    def test_types_run_through_the_lots_in_step(self) -> None:
        kits = [kit(i, 100, "A", "L1") for i in range(1, 4)]
        kits += [kit(i, 100, "B", "L1") for i in range(4, 6)]
        kits += [kit(i, 200, "A", "L2") for i in range(6, 9)]
        kits += [kit(i, 200, "B", "L2") for i in range(9, 12)]
        pool = SetPool(kits, self.TYPES, TODAY, DND)

        chosen = pool.take(4, SecretsRandom())

        by_id = {k.kit_id: k for k in kits}
        per_lot = Counter((by_id[i].lot, by_id[i].kit_type) for i in chosen)
        # Lot L1 gives two whole sets (its third A waits), then L2 gives two.
        assert per_lot == {("L1", "A"): 2, ("L1", "B"): 2, ("L2", "A"): 2, ("L2", "B"): 2}

    def test_a_lot_missing_a_type_gives_no_set_and_never_a_single_type(self) -> None:
        kits = [kit(1, 100, "A"), kit(2, 100, "A"), kit(3, 200, "B")]
        pool = SetPool(kits, self.TYPES, TODAY, DND)

        assert pool.available() == 0
        assert pool.take(3, SecretsRandom()) == []

    def test_fewer_sets_when_the_depot_runs_short(self) -> None:
        kits = [kit(1, 100, "A"), kit(2, 100, "B")]

        assert len(SetPool(kits, self.TYPES, TODAY, DND).take(5, SecretsRandom())) == 2

    def test_kits_inside_the_do_not_dispense_window_are_not_in_it(self) -> None:
        kits = [kit(1, DND, "A", "L1"), kit(2, 300, "B", "L1"), kit(3, 300, "A", "L1")]

        assert sorted(SetPool(kits, self.TYPES, TODAY, DND).take(1, SecretsRandom())) == [2, 3]

    def test_random_within_the_lot(self) -> None:
        kits = [kit(i, 100, "A", "L1") for i in range(1, 5)] + [kit(9, 100, "B", "L1")]
        seen = Counter(
            min(SetPool(kits, self.TYPES, TODAY, DND).take(1, SecretsRandom())) for _ in range(400)
        )
        assert set(seen) == {1, 2, 3, 4}
        assert min(seen.values()) > 50  # each about 100 of 400


class TestChooseKits:
    def test_only_the_requested_type(self) -> None:
        candidates = [kit(1, 100, "KT_PBO"), kit(2, 300)]

        assert choose_kits(candidates, "KT_IL7", 1, TODAY, DND, SecretsRandom()) == [2]

    def test_kit_expiring_within_the_window_is_never_dispensed(self) -> None:
        candidates = [kit(1, DND), kit(2, DND - 5), kit(3, DND + 1)]

        assert choose_kits(candidates, "KT_IL7", 1, TODAY, DND, SecretsRandom()) == [3]
        with pytest.raises(InsufficientSupply):
            choose_kits(candidates, "KT_IL7", 2, TODAY, DND, SecretsRandom())

    def test_the_lot_follows_a_kit_drawn_from_the_whole_shelf(self) -> None:
        # Shelf: L1 holds 1 A and 3 B, L2 holds 2 A. The reference draw (first value) falls
        # on kit 3, a B of L1, so the A handed out is the A of L1.
        candidates = [
            kit(1, 100, "A", "L1"),
            kit(2, 100, "B", "L1"),
            kit(3, 100, "B", "L1"),
            kit(4, 100, "B", "L1"),
            kit(5, 200, "A", "L2"),
            kit(6, 200, "A", "L2"),
        ]

        assert choose_kits(candidates, "A", 1, TODAY, DND, ScriptedRandom([2, 0])) == [1]
        # A reference of L2 gives an A of L2, although an earlier lot's A is on the shelf.
        assert choose_kits(candidates, "A", 1, TODAY, DND, ScriptedRandom([4, 1])) == [6]

    def test_a_type_without_the_reference_lot_takes_any_of_its_kits(self) -> None:
        candidates = [kit(1, 100, "B", "L1"), kit(2, 200, "A", "L2"), kit(3, 200, "A", "L2")]

        assert choose_kits(candidates, "A", 1, TODAY, DND, ScriptedRandom([0, 1])) == [3]

    def test_handed_out_lots_follow_the_shelf_mix_whatever_the_type(self) -> None:
        # Each type holds both lots; the lot handed out is distributed as the whole shelf's
        # (3 of 4 kits are L1), for A and for B alike, though A holds L1 and L2 1:1.
        shelf = [kit(1, 100, "A", "L1"), kit(2, 200, "A", "L2")]
        shelf += [kit(i, 100, "B", "L1") for i in range(3, 8)]
        shelf += [kit(8, 200, "B", "L2")]
        by_id = {k.kit_id: k for k in shelf}
        n = len(shelf)
        for kit_type in ("A", "B"):
            lots = Counter(
                by_id[choose_kits(shelf, kit_type, 1, TODAY, DND, ScriptedRandom([r, j]))[0]].lot
                for r in range(n)
                for j in range(6)
            )
            assert lots["L1"] * 2 == lots["L2"] * 6, kit_type  # 6/8 against 2/8

    def test_choice_does_not_depend_on_input_order(self) -> None:
        candidates = [kit(1, 100), kit(2, 100), kit(3, 100, "KT_PBO")]

        forward = choose_kits(candidates, "KT_IL7", 2, TODAY, DND, ScriptedRandom([1, 0, 2, 0]))
        backward = choose_kits(
            candidates[::-1], "KT_IL7", 2, TODAY, DND, ScriptedRandom([1, 0, 2, 0])
        )

        assert forward == backward

    def test_every_kit_of_a_lot_is_equally_likely(self) -> None:
        candidates = [kit(1, 100), kit(2, 100), kit(3, 100)]
        scripts = itertools.product(range(3), range(3))

        picks = Counter(
            choose_kits(candidates, "KT_IL7", 1, TODAY, DND, ScriptedRandom(s))[0] for s in scripts
        )

        assert picks == {1: 3, 2: 3, 3: 3}

    def test_several_kits_are_distinct(self) -> None:
        candidates = [kit(1, 100), kit(2, 200), kit(3, 200), kit(4, 200)]

        chosen = choose_kits(candidates, "KT_IL7", 3, TODAY, DND, SecretsRandom())

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

    def test_an_earlier_visit_still_open_must_be_settled_first(self) -> None:
        # D8 moved to overlap D4's window: on day 4 D4 is still open and unsettled.
        overlapping = (VISITS[0], VISITS[1], Visit("D8", 6, window_before=2, window_after=2))
        with pytest.raises(VisitNotAllowed, match="'D4'"):
            visit_check(overlapping, RANDOMIZED_ON, {"D1"}, "D8", on_day(4))
        visit_check(overlapping, RANDOMIZED_ON, {"D1", "D4"}, "D8", on_day(4))
        visit_check(overlapping, RANDOMIZED_ON, {"D1"}, "D8", on_day(4), recorded={"D4"})

    def test_a_missed_visit_no_longer_blocks_the_later_ones(self) -> None:
        # Issue 18: D4 was never dispensed; once its window closed, D8 goes ahead in its own.
        visit_check(VISITS, RANDOMIZED_ON, {"D1"}, "D8", on_day(7))
        visit_check(VISITS, RANDOMIZED_ON, set(), "D4", on_day(3))  # D1 closed on day 0

    @pytest.mark.parametrize("day", [2, 3])
    def test_a_visit_recorded_missed_or_held_lets_the_next_go_in_its_window(self, day: int) -> None:
        windows = (VISITS[0], Visit("D4", 3, 1, 1), Visit("D6", 5, 3, 1))  # D6: days 2 to 6
        with pytest.raises(VisitNotAllowed, match="'D4'"):
            visit_check(windows, RANDOMIZED_ON, {"D1"}, "D6", on_day(day))
        visit_check(windows, RANDOMIZED_ON, {"D1"}, "D6", on_day(day), recorded={"D4"})

    def test_a_visit_recorded_missed_or_held_is_never_dispensed(self) -> None:
        with pytest.raises(VisitAlreadyRecorded) as caught:
            visit_check(VISITS, RANDOMIZED_ON, {"D1"}, "D4", on_day(3), recorded={"D4"})

        assert caught.value.code == "visit_already_recorded"
        assert isinstance(caught.value, Conflict)

    def test_a_later_visit_still_only_in_its_own_window(self) -> None:
        with pytest.raises(VisitNotAllowed, match="is open from"):
            visit_check(VISITS, RANDOMIZED_ON, {"D1"}, "D8", on_day(5), recorded={"D4"})

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

        with pytest.raises(VisitNotAllowed, match="'D1'"):
            visit_check(shuffled_visits, RANDOMIZED_ON, set(), "D4", on_day(0))
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


class TestServableForEveryArm:
    # IRIS-7A at D1: PLACEBO gets KT_PBO; CYT107_QW and CYT107_BIW get KT_IL7.
    # At D4 (double dummy): PLACEBO and CYT107_QW get KT_PBO, CYT107_BIW gets KT_IL7.

    @pytest.mark.parametrize("visit", ["D1", "D4", "D25"])
    def test_every_arm_served(self, visit: str) -> None:
        assert servable_for_every_arm(make_study(), visit, {"KT_IL7": 2, "KT_PBO": 2}, 2)

    @pytest.mark.parametrize("visit", ["D1", "D4", "D25"])
    def test_one_type_short_refuses_whatever_the_subject_would_get(self, visit: str) -> None:
        # A subject of another arm would be served, yet the answer must not depend on the arm.
        study = make_study()
        assert not servable_for_every_arm(study, visit, {"KT_IL7": 50, "KT_PBO": 1}, 2)
        assert not servable_for_every_arm(study, visit, {"KT_IL7": 1, "KT_PBO": 50}, 2)

    def test_type_shared_by_two_arms_needs_one_quantity(self) -> None:
        assert servable_for_every_arm(make_study(), "D1", {"KT_IL7": 3, "KT_PBO": 3}, 3)

    def test_type_absent(self) -> None:
        assert not servable_for_every_arm(make_study(), "D1", {"KT_IL7": 50}, 1)

    def test_unknown_visit_is_never_servable(self) -> None:
        assert not servable_for_every_arm(make_study(), "D99", {"KT_IL7": 9, "KT_PBO": 9}, 1)
