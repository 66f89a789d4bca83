"""Resupply: initial sets, the demand forecast, the daily review's rule and its blind-safety
properties (a shipment's size never depends on which type ran low)."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.domain.resupply import (
    Forecast,
    OnTreatment,
    forecast,
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


def on(arm: str, days_ago: int, dispensed: str = "", quantity: int = 2) -> OnTreatment:
    return OnTreatment(
        arm, TODAY - timedelta(days=days_ago), frozenset(dispensed.split()), quantity
    )


class TestInitialSets:
    def test_the_largest_initial_level_in_whole_sets(self) -> None:
        assert initial_sets(LEVELS) == 16

    def test_example_study(self) -> None:
        assert initial_sets(make_study().supply.levels) == 16


class TestForecast:
    # IRIS-7A visits: D1 day 0, D4 day 3, D8 day 7, D11 day 10, ... D25 day 24, windows +-1.
    # PLACEBO: KT_PBO at every visit; CYT107_BIW: KT_IL7 at every visit; CYT107_QW: KT_IL7
    # at D1, D8, D15, D22 and KT_PBO between.

    def test_coming_visits_within_the_horizon_by_the_subjects_arm(self) -> None:
        # Randomized 8 days ago (not a recent arrival), D1-D8 done: D11 (opens day 9) and
        # D15 (opens day 13) open within 7 days, D18 (day 16) does not.
        found = forecast(make_study(), [on("CYT107_QW", 8, "D1 D4 D8", 3)], TODAY, 7)

        assert found == Forecast({"KT_PBO": 3, "KT_IL7": 3}, blind=6)

    def test_visits_beyond_the_horizon_are_not_counted(self) -> None:
        found = forecast(make_study(), [on("PLACEBO", 8, "D1 D4 D8")], TODAY, horizon_days=3)

        assert found == Forecast({"KT_PBO": 2}, blind=2)

    def test_as_many_arrivals_expected_as_came_over_the_horizon(self) -> None:
        # Two subjects randomized within the last 4 days with 3 and 1 kits: 4 kits of first
        # visits expected, shared by the ratio 1:1:1 between KT_PBO (PLACEBO) and KT_IL7 (the
        # two active arms), rounded up; the same whatever those subjects' own arms.
        done = "D1 D4 D8 D11 D15 D18 D22 D25"
        for arms in (("PLACEBO", "PLACEBO"), ("CYT107_BIW", "CYT107_QW")):
            subjects = [on(arms[0], 2, done, 3), on(arms[1], 3, done, 1), on(arms[1], 4, done)]

            found = forecast(make_study(), subjects, TODAY)  # the third came 4 days ago

            assert found == Forecast({"KT_PBO": 2, "KT_IL7": 3}, blind=4)

    def test_a_missed_visit_is_not_counted(self) -> None:
        # Randomized 5 days ago, D4 (days 2-4) never dispensed: its window has closed.
        found = forecast(make_study(), [on("CYT107_BIW", 5, "D1")], TODAY, horizon_days=1)

        assert found == Forecast({"KT_IL7": 2}, blind=2)  # D8 opens on day 6

    def test_dispensed_visits_are_not_counted(self) -> None:
        done = "D1 D4 D8 D11 D15 D18 D22 D25"
        assert forecast(make_study(), [on("PLACEBO", 24, done)], TODAY) == Forecast()

    def test_blind_demand_is_the_same_whatever_the_arms(self) -> None:
        arms = ("PLACEBO", "CYT107_QW", "CYT107_BIW")
        blinds = {
            forecast(make_study(), [on(a, 3, "D1"), on(b, 8, "D1 D4 D8", 3)], TODAY).blind
            for a in arms
            for b in arms
        }
        assert len(blinds) == 1


class TestResupplySets:
    def test_nothing_while_every_type_covers_its_demand_and_trigger(self) -> None:
        demand = Forecast({"KT_IL7": 4, "KT_PBO": 2}, blind=6)
        assert resupply_sets(LEVELS, {"KT_IL7": 12, "KT_PBO": 6}, demand) == 0

    def test_a_type_short_of_demand_plus_trigger_ships_whole_sets(self) -> None:
        demand = Forecast({"KT_IL7": 5}, blind=5)
        # 12 - 5 < 8: the base, max(resupply - trigger) = 8 sets.
        assert resupply_sets(LEVELS, {"KT_IL7": 12, "KT_PBO": 30}, demand) == 8

    def test_a_large_coming_demand_ships_it_and_the_trigger_level(self) -> None:
        # Nothing held: want = the blind demand (20) + the largest trigger (8).
        demand = Forecast({"KT_IL7": 10, "KT_PBO": 10}, blind=20)
        assert resupply_sets(LEVELS, {"KT_IL7": 0, "KT_PBO": 0}, demand) == 28

    def test_the_size_counts_the_largest_share_of_one_type_and_what_the_site_holds(
        self,
    ) -> None:
        # IRIS-7: two arms of three get the active kit at the first visit.
        assert top_share(make_study()) == Fraction(2, 3)
        demand = Forecast({"KT_IL7": 30}, blind=30)
        # want = 30 x 2/3 + 8 = 28; held = (0 + 10) / 2 = 5: 23 sets.
        assert resupply_sets(LEVELS, {"KT_IL7": 0, "KT_PBO": 10}, demand, Fraction(2, 3)) == 23

    def test_negative_counts_are_refused(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            resupply_sets(LEVELS, {"KT_IL7": -1}, Forecast())


class TestResupplyBlindSafety:
    """Properties: the size of a shipment is a function of what the site could compute itself
    (its subjects' blind demand, the kits it holds of all types together), never of which
    type ran low."""

    @given(levels_by_type, st.data())
    def test_size_is_the_same_whichever_type_was_consumed(
        self, levels: dict[str, SupplyLevels], data: st.DataObject
    ) -> None:
        types = sorted(levels)
        stock = {t: data.draw(counts, label=f"stock {t}") for t in types}
        blind = data.draw(counts, label="blind demand")
        x, y, *_ = data.draw(st.permutations(types), label="consumed")
        assume(stock[x] >= 1 and stock[y] >= 1)
        site_a = {**stock, x: stock[x] - 1}
        site_b = {**stock, y: stock[y] - 1}

        sets_a = resupply_sets(levels, site_a, Forecast({}, blind), Fraction(2, 3))
        sets_b = resupply_sets(levels, site_b, Forecast({}, blind), Fraction(2, 3))

        if sets_a and sets_b:
            assert sets_a == sets_b

    @given(levels_by_type, st.data())
    def test_ships_exactly_when_a_type_falls_below_demand_and_trigger(
        self, levels: dict[str, SupplyLevels], data: st.DataObject
    ) -> None:
        stock = {t: data.draw(counts, label=f"stock {t}") for t in sorted(levels)}
        by_type = {t: data.draw(counts, label=f"demand {t}") for t in sorted(levels)}
        demand = Forecast(by_type, sum(by_type.values()))

        sets = resupply_sets(levels, stock, demand)

        short = any(stock[t] - by_type[t] < lv.trigger for t, lv in levels.items())
        assert bool(sets) == short
        if sets:
            # What each type would hold, were the types used evenly, then covers the blind
            # demand and the trigger.
            held = sum(stock.values()) // len(levels)
            assert held + sets >= demand.blind + max(lv.trigger for lv in levels.values())
