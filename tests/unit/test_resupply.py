"""Resupply: initial shipment, the all-types trigger rule, and its blind-safety property."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.domain.resupply import initial_shipment, resupply_needs
from app.domain.study import SupplyLevels
from tests.builders import make_study

LEVELS = {
    "KT_IL7": SupplyLevels(initial=16, trigger=8, resupply=16),
    "KT_PBO": SupplyLevels(initial=12, trigger=4, resupply=10),
}


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


class TestInitialShipment:
    def test_initial_level_of_every_type(self) -> None:
        assert initial_shipment(LEVELS) == {"KT_IL7": 16, "KT_PBO": 12}

    def test_example_study(self) -> None:
        assert initial_shipment(make_study().supply.levels) == {"KT_IL7": 16, "KT_PBO": 16}


class TestResupplyNeeds:
    def test_nothing_while_every_type_is_at_or_above_its_trigger(self) -> None:
        assert resupply_needs(LEVELS, {"KT_IL7": 8, "KT_PBO": 4}, {}) == {}

    def test_one_type_below_trigger_restores_every_type(self) -> None:
        needs = resupply_needs(LEVELS, {"KT_IL7": 7, "KT_PBO": 6}, {})

        assert needs == {"KT_IL7": 9, "KT_PBO": 4}

    def test_kits_in_transit_count_as_stock(self) -> None:
        assert resupply_needs(LEVELS, {"KT_IL7": 5, "KT_PBO": 6}, {"KT_IL7": 3}) == {}
        assert resupply_needs(LEVELS, {"KT_IL7": 5, "KT_PBO": 3}, {"KT_IL7": 3}) == {
            "KT_IL7": 8,
            "KT_PBO": 7,
        }

    def test_a_type_at_its_resupply_level_still_gets_one_kit(self) -> None:
        needs = resupply_needs(LEVELS, {"KT_IL7": 7, "KT_PBO": 10}, {})

        assert needs == {"KT_IL7": 9, "KT_PBO": 1}

    def test_a_type_missing_from_the_counts_has_none(self) -> None:
        assert resupply_needs(LEVELS, {"KT_IL7": 16}, {}) == {"KT_IL7": 1, "KT_PBO": 10}

    def test_negative_counts(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            resupply_needs(LEVELS, {"KT_IL7": -1}, {})


class TestResupplyBlindSafety:
    """Property: a triggered shipment carries every type, whichever type was consumed.

    Two sites identical except that at the same visit site A's subject took one kit of type X
    and site B's one kit of type Y (X != Y; stocks differ by that swap only): whenever both
    trigger, the SET of types shipped (those with a positive quantity) is identical, and is
    every type of the levels.
    """

    @given(levels_by_type, st.data())
    def test_same_types_shipped_whichever_type_was_consumed(
        self, levels: dict[str, SupplyLevels], data: st.DataObject
    ) -> None:
        types = sorted(levels)
        before = {t: data.draw(counts, label=f"available {t}") for t in types}
        in_transit = {t: data.draw(counts, label=f"in transit {t}") for t in types}
        x, y, *_ = data.draw(st.permutations(types), label="consumed")
        assume(before[x] >= 1 and before[y] >= 1)
        site_a = {**before, x: before[x] - 1}
        site_b = {**before, y: before[y] - 1}

        needs_a = resupply_needs(levels, site_a, in_transit)
        needs_b = resupply_needs(levels, site_b, in_transit)

        if needs_a and needs_b:
            shipped_a = {t for t, q in needs_a.items() if q > 0}
            shipped_b = {t for t, q in needs_b.items() if q > 0}
            assert shipped_a == shipped_b == set(types)

    @given(levels_by_type, st.data())
    def test_a_shipment_restores_every_type(
        self, levels: dict[str, SupplyLevels], data: st.DataObject
    ) -> None:
        available = {t: data.draw(counts, label=f"available {t}") for t in sorted(levels)}
        in_transit = {t: data.draw(counts, label=f"in transit {t}") for t in sorted(levels)}

        needs = resupply_needs(levels, available, in_transit)

        triggered = any(available[t] + in_transit[t] < lv.trigger for t, lv in levels.items())
        assert bool(needs) == triggered
        for kit_type, quantity in needs.items():
            stock = available[kit_type] + in_transit[kit_type]
            assert stock + quantity == max(levels[kit_type].resupply, stock + 1)
