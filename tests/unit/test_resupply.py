"""Resupply: initial sets, the coming demand, the daily review's rule and its blind-safety
property (whether and how much a site is shipped depends only on what it can count)."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.domain.resupply import (
    OnTreatment,
    SiteCounts,
    coming_demand,
    initial_sets,
    resupply_sets,
    top_share,
)
from app.domain.study import SupplyLevels
from tests.builders import make_study

LEVELS = {
    "KT_IL7": SupplyLevels(initial=16, trigger=8, resupply=16),
    "KT_PBO": SupplyLevels(initial=12, trigger=4, resupply=10),
}
TODAY = date(2026, 3, 10)


@st.composite
def supply_levels(draw: st.DrawFn) -> SupplyLevels:
    trigger = draw(st.integers(min_value=0, max_value=20))
    resupply = draw(st.integers(min_value=trigger + 1, max_value=40))
    initial = draw(st.integers(min_value=trigger, max_value=50))
    return SupplyLevels(initial=initial, trigger=trigger, resupply=resupply)


levels_by_type = st.dictionaries(
    st.sampled_from(["KT_A", "KT_B", "KT_C", "KT_D"]), supply_levels(), min_size=2
)
counts = st.integers(min_value=0, max_value=45)


def on(days_ago: int, dispensed: str = "", quantity: int = 2) -> OnTreatment:
    return OnTreatment(TODAY - timedelta(days=days_ago), frozenset(dispensed.split()), quantity)


ALL_VISITS = "D1 D4 D8 D11 D15 D18 D22 D25"
TWO_THIRDS = Fraction(2, 3)


class TestInitialSets:
    def test_the_largest_initial_level_in_whole_sets(self) -> None:
        assert initial_sets(LEVELS) == 16

    def test_example_study(self) -> None:
        assert initial_sets(make_study().supply.levels) == 16


class TestComingDemand:
    # IRIS-7A visits: D1 day 0, D4 day 3, D8 day 7, D11 day 10, ... D25 day 24, windows +-1.

    def test_coming_visits_within_the_horizon(self) -> None:
        # Randomized 8 days ago (not a recent arrival), D1-D8 done: D11 (opens day 9) and
        # D15 (opens day 13) open within 7 days, D18 (day 16) does not.
        assert coming_demand(make_study(), [on(8, "D1 D4 D8", 3)], TODAY, 7) == 6

    def test_visits_beyond_the_horizon_are_not_counted(self) -> None:
        assert coming_demand(make_study(), [on(8, "D1 D4 D8")], TODAY, horizon_days=3) == 2

    def test_a_missed_visit_is_not_counted(self) -> None:
        # Randomized 5 days ago, D4 (days 2-4) never dispensed: its window has closed.
        assert coming_demand(make_study(), [on(5, "D1")], TODAY, horizon_days=1) == 2

    def test_dispensed_visits_are_not_counted(self) -> None:
        assert coming_demand(make_study(), [on(24, ALL_VISITS)], TODAY) == 0

    def test_as_many_arrivals_expected_as_came_over_the_horizon(self) -> None:
        # Two subjects randomized within the last 4 days with 3 and 1 kits; one 4 days ago.
        subjects = [on(2, ALL_VISITS, 3), on(3, ALL_VISITS, 1), on(4, ALL_VISITS)]
        assert coming_demand(make_study(), subjects, TODAY) == 4


class TestResupplySets:
    # LEVELS: triggers 8 and 4 (the largest, 8, is the safety stock); base 16 - 8 = 8 sets.

    def test_nothing_while_the_type_used_most_would_still_cover_demand_and_trigger(
        self,
    ) -> None:
        # 40 of each type shipped, 62 left of 80: 18 gone, of which a type took 12 at most;
        # 28 left of it covers 2/3 x 12 + 8 = 16.
        counts = SiteCounts(shipped=40, stock=62, demand=12)
        assert resupply_sets(LEVELS, counts, TWO_THIRDS) == 0

    def test_ships_when_it_would_not(self) -> None:
        # 16 shipped, 20 left of 32: 12 gone, a type took 8 at most, 8 left < 2/3 x 9 + 8.
        counts = SiteCounts(shipped=16, stock=20, demand=9)
        assert resupply_sets(LEVELS, counts, TWO_THIRDS) == 8  # 14 - 8 = 6 < the base

    def test_a_large_shortfall_ships_it_whole(self) -> None:
        counts = SiteCounts(shipped=16, stock=2, demand=30)
        # 30 gone, 20 at most of a type: -4 left; want 20 + 8 = 28: 32 sets.
        assert resupply_sets(LEVELS, counts, TWO_THIRDS) == 32

    def test_after_a_refusal_every_kit_gone_counts_against_each_type(self) -> None:
        # 18 gone: 28 left of a type that took 2/3 of it covers 2/3 x 20 + 8 = 22, but 22
        # left of a type that took all of it does not cover 20 + 8: the base, 8 sets.
        counts = SiteCounts(shipped=40, stock=62, demand=20)
        assert resupply_sets(LEVELS, counts, TWO_THIRDS) == 0
        assert resupply_sets(LEVELS, counts, Fraction(1)) == 8

    def test_the_iris_share(self) -> None:
        # Two arms of three get the active kit at the first visit.
        assert top_share(make_study()) == TWO_THIRDS

    def test_bad_counts_are_refused(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            resupply_sets(LEVELS, SiteCounts(shipped=-1, stock=0, demand=0), TWO_THIRDS)
        with pytest.raises(ValueError, match="share"):
            resupply_sets(LEVELS, SiteCounts(shipped=1, stock=0, demand=0), Fraction(0))


class TestResupplyIsBlind:
    """Property: two sites whose subjects took kits of different types, but as many, get the
    same decision: the rule reads no type and no arm."""

    @given(
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=0, max_value=60),
    )
    def test_the_decision_needs_no_type(self, shipped: int, taken: int, demand: int) -> None:
        # Whatever the split of `taken` between the types, the site counts the same.
        stock = max(0, 2 * shipped - taken)
        counts = SiteCounts(shipped=shipped, stock=stock, demand=demand)
        sets = resupply_sets(LEVELS, counts, TWO_THIRDS)
        assert sets == resupply_sets(LEVELS, counts, TWO_THIRDS)
        if sets:
            # Afterwards the type used most (at most 2/3 of what went) covers the demand's
            # share and the safety stock.
            gone = 2 * shipped - stock
            low = shipped + sets - -(-2 * gone // 3)
            assert low >= -(-2 * demand // 3) + 8

    @given(
        st.integers(min_value=1, max_value=40),
        st.lists(st.sampled_from(["KT_IL7", "KT_PBO"]), max_size=60),
        st.integers(min_value=0, max_value=30),
    )
    def test_no_type_runs_out_while_none_takes_more_than_the_share(
        self, shipped: int, taken: list[str], demand: int
    ) -> None:
        used = {t: taken.count(t) for t in ("KT_IL7", "KT_PBO")}
        assume(all(n <= shipped for n in used.values()))
        assume(max(used.values()) <= TWO_THIRDS * len(taken))
        counts = SiteCounts(shipped=shipped, stock=2 * shipped - len(taken), demand=demand)

        sets = resupply_sets(LEVELS, counts, TWO_THIRDS)

        # Every type then holds at least the trigger beyond its share of the demand.
        for n in used.values():
            assert shipped + sets - n >= TWO_THIRDS * demand + 8
