"""How many kits a study makes and how they are spread over its depots (pure rules of
app.services.supply)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.domain.kits import Lot
from app.services.ports import NewKit
from app.services.supply import deal_to_depots, kit_plan
from tests.builders import make_study, set_path, study_document


def two_depot_study(kits_per_lot: int = 120) -> dict[str, Any]:
    doc = study_document()
    doc["depots"].append({"code": "FR_SOUTH", "name": "Dépôt sud", "country": "FR"})
    set_path(doc, "sites[2].depot", "FR_SOUTH")
    set_path(doc, "supply.kits_per_lot", kits_per_lot)
    return doc


class TestKitPlan:
    def test_example_study(self) -> None:
        # 4 sites (the inactive one too) x (16 + 3 x 16) = 256 per type -> 3 lots of 120.
        assert kit_plan(make_study()) == {"FR_DEPOT": {"KT_IL7": 360, "KT_PBO": 360}}
        assert make_study().supply.resupply_rounds == 3  # the default

    def test_whole_lots_per_type_spread_over_depots(self) -> None:
        plan = kit_plan(make_study(two_depot_study()))

        # FR_DEPOT serves 3 sites (192 per type), FR_SOUTH one (64): 256 -> 360, the 104
        # extra kits dealt one by one to the depots in turn.
        assert plan == {
            "FR_DEPOT": {"KT_IL7": 192 + 52, "KT_PBO": 192 + 52},
            "FR_SOUTH": {"KT_IL7": 64 + 52, "KT_PBO": 64 + 52},
        }

    def test_every_type_as_many_kits_for_whole_sets(self) -> None:
        # Shipments are whole sets (one kit of every type), so a type with lower levels is
        # made as often as the largest: 4 x (16 + 3 x 16) = 256 -> 300 for both.
        doc = study_document()
        set_path(doc, "supply.levels.KT_PBO", {"initial": 10, "trigger": 2, "resupply": 5})
        set_path(doc, "supply.kits_per_lot", 50)

        plan = kit_plan(make_study(doc))

        assert plan == {"FR_DEPOT": {"KT_IL7": 300, "KT_PBO": 300}}

    def test_resupply_rounds_size_the_list(self) -> None:
        # 4 sites x (16 + 10 x 16) = 704 per type -> 720, in whole lots of 120.
        doc = study_document()
        set_path(doc, "supply.resupply_rounds", 10)

        assert kit_plan(make_study(doc)) == {"FR_DEPOT": {"KT_IL7": 720, "KT_PBO": 720}}


def kit(number: int, kit_type: str, expiry_day: int) -> NewKit:
    return NewKit(f"{number:08d}", kit_type, Lot(f"L{expiry_day}", date(2026, 1, expiry_day)), "")


class TestDealToDepots:
    def test_every_depot_gets_its_quota_of_every_lot(self) -> None:
        kits = [kit(i, "A", 1 + i // 10) for i in range(30)]  # three lots of ten, in order
        plan = {"D1": {"A": 15}, "D2": {"A": 15}}

        dealt = deal_to_depots(kits, plan)

        by_depot: dict[str, Counter[str]] = {}
        for k in dealt:
            by_depot.setdefault(k.depot, Counter())[k.lot.code] += 1
        assert by_depot == {"D1": Counter({"L1": 5, "L2": 5, "L3": 5}), "D2": by_depot["D1"]}

    @given(
        st.dictionaries(
            st.sampled_from(["D1", "D2", "D3"]),
            st.fixed_dictionaries({"A": st.integers(0, 20), "B": st.integers(0, 20)}),
            min_size=1,
        )
    )
    def test_quotas_are_met_exactly(self, plan: dict[str, dict[str, int]]) -> None:
        kits = [
            kit(1000 * (t == "B") + i, t, 1 + i % 3)
            for t in ("A", "B")
            for i in range(sum(p[t] for p in plan.values()))
        ]

        dealt = deal_to_depots(kits, plan)

        assert sorted(k.kit_number for k in dealt) == sorted(k.kit_number for k in kits)
        got = Counter((k.depot, k.kit_type) for k in dealt)
        assert got == Counter({(d, t): n for d, p in plan.items() for t, n in p.items() if n})
