"""The leak measures on tiny hand-made observations: a leaky example scores as leaky, a clean
one as clean (app.adapters.simulation.leaks)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest

from app.adapters.simulation import leaks
from app.adapters.simulation.leaks import (
    Observations,
    SeenDispensation,
    SeenKit,
    SeenRefusal,
    SeenShipment,
    Truth,
)
from app.adapters.studyfiles.codec import read_study_file
from app.domain.resupply import SiteCounts
from app.domain.study import Study, SupplyLevels
from tests.conftest import STUDIES_DIR

STUDY = "s"
T0 = datetime(2027, 3, 1, 9, tzinfo=UTC)
EARLY, LATE = date(2028, 1, 31), date(2028, 7, 31)
DISPENSING = {
    STUDY: {
        ("P", "V1"): "A",
        ("P", "V2"): "A",
        ("Q", "V1"): "B",
        ("Q", "V2"): "B",
        ("W", "V1"): "B",
        ("W", "V2"): "A",
    },
}


def kit(number: str, lot: str = "L0001", expiry: date = EARLY) -> SeenKit:
    return SeenKit(number, lot, expiry)


def truth(types: dict[str, str], arms: dict[str, str] | None = None) -> Truth:
    return Truth(
        kit_type={(STUDY, n): t for n, t in types.items()},
        arm={(STUDY, s): a for s, a in (arms or {}).items()},
        dispensing=DISPENSING,
    )


class Recorder:
    """Builds observations in order, one site unless told."""

    def __init__(self) -> None:
        self.obs = Observations()

    def receive(
        self,
        kits: list[SeenKit],
        kind: str = "initial",
        created_at: datetime = T0,
        site: str = "S1",
        damaged: tuple[str, ...] = (),
    ) -> None:
        seq = self.obs.next_seq()
        shipment_id = f"SH-{site}-{seq}"
        self.obs.shipments.append(
            SeenShipment(seq, STUDY, site, shipment_id, kind, created_at, T0, tuple(kits), damaged)
        )

    def dispense(
        self,
        subject: str,
        kits: list[SeenKit],
        visit: str = "V2",
        at: datetime = T0,
        site: str = "S1",
    ) -> None:
        index = int(visit[1:]) - 1
        self.obs.dispensations.append(
            SeenDispensation(
                self.obs.next_seq(), STUDY, site, subject, visit, index, at, tuple(kits)
            )
        )

    def refuse(self, subject: str, visit: str = "V2", site: str = "S1") -> None:
        index = int(visit[1:]) - 1
        self.obs.refusals.append(
            SeenRefusal(
                self.obs.next_seq(), STUDY, site, subject, visit, index, "insufficient_supply", 1
            )
        )


class TestAuc:
    def test_perfect_reversed_tied_and_empty(self) -> None:
        assert leaks.auc(Counter({1.0: 3}), Counter({0.0: 2})) == 1.0
        assert leaks.auc(Counter({0.0: 3}), Counter({1.0: 2})) == 0.0
        assert leaks.auc(Counter({1.0: 3}), Counter({1.0: 2})) == 0.5
        assert leaks.auc(Counter({2.0: 1, 0.0: 1}), Counter({1.0: 1})) == 0.5
        assert leaks.auc(Counter(), Counter({1.0: 2})) is None


class TestLotOrder:
    def test_fefo_by_type_leaves_only_the_other_type_behind(self) -> None:
        """Type A in the early lot, type B in the late lot: handing out a late-lot kit says
        the early-lot kits left on the shelf are A."""
        rec = Recorder()
        early = [kit(f"A{i}", "L0001", EARLY) for i in range(4)]
        late = [kit(f"B{i}", "L0002", LATE) for i in range(4)]
        rec.receive(early + late)
        rec.dispense("X", [late[0]])
        rec.dispense("Y", [late[1]])
        types = {k.number: k.number[0] for k in early + late}
        events = leaks.shelf_events(rec.obs)
        order = leaks.lot_order(events, truth(types))
        assert (order.skip_events, order.earlier_kits, order.same_type_earlier) == (2, 8, 0)
        assert order.expected_share > 0.3
        assert leaks.shelf_order_auc(events, truth(types))[0] == 1.0
        assert leaks.lot_pair_auc(rec.obs, truth(types))[0] == 1.0

    def test_lots_of_every_type_say_nothing(self) -> None:
        rec = Recorder()
        shelf = [
            kit("A1", "L0001", EARLY),
            kit("B1", "L0001", EARLY),
            kit("A2", "L0002", LATE),
            kit("A3", "L0002", LATE),
            kit("B3", "L0002", LATE),
        ]
        rec.receive(shelf)
        rec.dispense("X", [shelf[2]])
        types = {k.number: k.number[0] for k in shelf}
        events = leaks.shelf_events(rec.obs)
        order = leaks.lot_order(events, truth(types))
        assert order.observed_share == order.expected_share == 0.5
        assert leaks.shelf_order_auc(events, truth(types))[0] == 0.5

    def test_one_lot_for_all_says_nothing_by_lot_code(self) -> None:
        rec = Recorder()
        shelf = [kit(n) for n in ("A1", "A2", "B1", "B2")]
        rec.receive(shelf)
        types = {k.number: k.number[0] for k in shelf}
        assert leaks.lot_pair_auc(rec.obs, truth(types)) == (0.5, 6)

    def test_damaged_dispensed_and_expired_kits_leave_the_shelf(self) -> None:
        rec = Recorder()
        old = kit("A0", "L0000", date(2027, 2, 1))  # expired before the visit
        shelf = [kit("A1"), kit("B1"), kit("B2", "L0002", LATE)]
        rec.receive([old, *shelf], damaged=("B1",))
        rec.dispense("X", [shelf[0]])
        rec.dispense("Y", [shelf[2]], at=T0 + timedelta(days=1))
        events = leaks.shelf_events(rec.obs)
        assert [[k.number for k in e.shelf] for e in events] == [["B2"], []]


class TestArmCalls:
    def test_fefo_by_type_names_every_arm(self) -> None:
        rec = Recorder()
        a = [kit(f"A{i}", "L0001", EARLY) for i in range(1, 4)]
        b = [kit(f"B{i}", "L0002", LATE) for i in range(1, 4)]
        rec.receive(a + b)
        rec.dispense("X", [b[0]], visit="V1")  # arm W: B then A
        rec.dispense("X", [a[0]], visit="V2")
        rec.dispense("Y", [b[1]], visit="V1")  # arm Q: B, B
        rec.dispense("Y", [b[2]], visit="V2")
        rec.dispense("Z", [a[1]], visit="V1")  # arm P: A, A
        rec.dispense("Z", [a[2]], visit="V2")
        t = truth({k.number: k.number[0] for k in a + b}, {"X": "W", "Y": "Q", "Z": "P"})
        calls = leaks.lot_arm_calls(rec.obs, leaks.shelf_events(rec.obs), t)
        assert (calls.subjects, calls.called, calls.right, calls.conflicted) == (3, 3, 3, 0)

    def test_lots_of_every_type_mislead_the_attacker(self) -> None:
        rec = Recorder()
        shelf = [
            kit("A1", "L0001", EARLY),
            kit("B1", "L0001", EARLY),
            kit("A2", "L0002", LATE),
            kit("B2", "L0002", LATE),
        ]
        rec.receive(shelf)
        rec.dispense("X", [shelf[2]], visit="V1")  # arm P, a late kit at random
        rec.dispense("X", [shelf[0]], visit="V2")
        rec.dispense("Y", [shelf[3]], visit="V1")  # arm Q
        rec.dispense("Y", [shelf[1]], visit="V2")
        t = truth({k.number: k.number[0] for k in shelf}, {"X": "P", "Y": "Q"})
        calls = leaks.lot_arm_calls(rec.obs, leaks.shelf_events(rec.obs), t)
        assert calls.right == 0


class TestRefusals:
    def refused_then_served(self, served: list[tuple[str, str]]) -> Recorder:
        rec = Recorder()
        rec.receive([kit("B1"), kit("B2"), kit("B3")])
        rec.refuse("R")  # arm P: V2 needs A, the shelf holds only B
        for subject, number in served:
            rec.dispense(subject, [kit(number)])
        rec.receive([kit("A1")], kind="resupply")
        rec.dispense("Z", [kit("A1")])  # after a delivery: not paired
        return rec

    def test_only_the_other_type_is_served_after_a_refusal(self) -> None:
        rec = self.refused_then_served([("X", "B1"), ("Y", "B2")])
        t = truth(
            {"A1": "A", "B1": "B", "B2": "B", "B3": "B"},
            {"R": "P", "X": "Q", "Y": "Q", "Z": "P"},
        )
        pairs = leaks.refusal_pairs(rec.obs, t)
        assert (pairs.refusals, pairs.refusals_with_pairs, pairs.pairs) == (1, 1, 2)
        assert pairs.observed == 1.0
        assert pairs.expected == pytest.approx(0.5)
        shortage = leaks.refusal_shortage(rec.obs, t)
        assert (shortage.refusals, shortage.refused_type_short) == (1, 1)
        assert leaks.later_visit_rate(rec.obs) == (1, 4)

    def test_a_refusal_of_any_type_pairs_at_the_base_rate(self) -> None:
        rec = self.refused_then_served([("X", "B1"), ("Y", "A9")])
        t = truth(
            {"A1": "A", "A9": "A", "B1": "B", "B2": "B", "B3": "B"},
            {"R": "P", "X": "Q", "Y": "P", "Z": "P"},
        )
        pairs = leaks.refusal_pairs(rec.obs, t)
        assert pairs.observed == 0.5

    def test_the_refused_type_is_expected_as_often_as_among_the_sites_other_subjects(
        self,
    ) -> None:
        """A site whose subjects are all of one arm runs short of that arm's type: its
        refused subject being of that type is what its peers predict, not a leak."""
        rec = Recorder()
        rec.receive([kit("A1"), kit("A2"), kit("A3"), kit("B1"), kit("B2")])
        rec.receive([kit("B3"), kit("B4"), kit("B5")], site="S2")
        for i in (1, 2, 3):
            rec.dispense(f"X{i}", [kit(f"A{i}")])
            rec.dispense(f"Y{i}", [kit(f"B{i + 2}")], site="S2")
        rec.refuse("R")  # at S1, where only B is left
        types = {f"A{i}": "A" for i in (1, 2, 3)} | {f"B{i}": "B" for i in range(1, 6)}
        arms = {"R": "P", "X1": "P", "X2": "P", "X3": "P", "Y1": "Q", "Y2": "Q", "Y3": "Q"}
        shortage = leaks.refusal_shortage(rec.obs, truth(types, arms))
        assert (shortage.refusals, shortage.refused_type_short) == (1, 1)
        assert shortage.expected == pytest.approx(1.0)  # the study's demand would say 4/7

    def test_first_visit_refusals_are_not_later_visits(self) -> None:
        rec = Recorder()
        rec.refuse("R", visit="V1")
        assert leaks.refusal_pairs(rec.obs, truth({}, {"R": "P"})).refusals == 0


class TestResupply:
    def test_a_shipment_made_inside_a_dispensation_is_seen(self) -> None:
        rec = Recorder()
        rec.receive([kit("A1"), kit("B1")])
        rec.dispense("X", [kit("A1")], at=T0 + timedelta(hours=3))
        rec.receive([kit("A2")], kind="resupply", created_at=T0 + timedelta(hours=3))
        rec.receive([kit("A3"), kit("B3")], kind="resupply", created_at=T0 + timedelta(days=1))
        timing = leaks.shipment_timing(rec.obs)
        assert (timing.resupply_shipments, timing.at_a_dispensation) == (2, 1)
        types = {n: n[0] for n in ("A1", "B1", "A2", "A3", "B3")}
        composition = leaks.shipment_composition(rec.obs, truth(types))
        assert (composition.single_type, composition.not_whole_sets) == (1, 1)

    def test_whole_sets_at_fixed_times_are_clean(self) -> None:
        rec = Recorder()
        rec.receive([kit("A1"), kit("B1")])
        rec.dispense("X", [kit("A1")], at=T0 + timedelta(hours=3))
        rec.receive([kit("A2"), kit("B2")], kind="resupply", created_at=T0 + timedelta(days=1))
        timing = leaks.shipment_timing(rec.obs)
        assert timing.at_a_dispensation == 0
        types = {n: n[0] for n in ("A1", "B1", "A2", "B2")}
        composition = leaks.shipment_composition(rec.obs, truth(types))
        assert (composition.single_type, composition.not_whole_sets) == (0, 0)

    def test_lopsided_small_shipments_tell_pairs_apart(self) -> None:
        rec = Recorder()
        small = ["A1", "A2", "A3"]
        large = ["A4", "A5", "A6", "B4", "B5", "B6"]
        rec.receive([kit(n) for n in small], kind="resupply")
        rec.receive([kit(n) for n in large], kind="resupply")
        types = {n: n[0] for n in small + large}
        score, pairs = leaks.shipment_size_auc(rec.obs, truth(types))
        assert pairs == 3 + 15
        assert score is not None
        assert score > 0.6

    def test_equal_sizes_say_nothing(self) -> None:
        rec = Recorder()
        numbers = [[f"{t}{i}{j}" for t in "AB" for j in range(2)] for i in range(3)]
        for shipment in numbers:
            rec.receive([kit(n) for n in shipment], kind="resupply")
        types = {n: n[0] for shipment in numbers for n in shipment}
        assert leaks.shipment_size_auc(rec.obs, truth(types)) == (0.5, 18)


def test_observations_serialise_to_json() -> None:
    rec = Recorder()
    rec.receive([kit("A1")])
    rec.dispense("X", [kit("A1")])
    rec.refuse("Y")
    data = rec.obs.to_json()
    assert [len(data[k]) for k in ("shipments", "dispensations", "refusals")] == [1, 1, 1]
    assert data["dispensations"][0]["kits"] == [["A1", "L0001", "2028-01-31"]]


IRIS = read_study_file(STUDIES_DIR / "iris-7a.toml")[0]


def one_visit_study(initial: int, trigger: int) -> Study:
    """IRIS-7A dosed once (D1, with the randomization): the review's forecast is then the
    blind share of the subjects expected alone (2/3 KT_IL7, 1/3 KT_PBO, rounded up)."""
    study, _doc, _sha = read_study_file(STUDIES_DIR / "iris-7a.toml")
    levels = SupplyLevels(initial=initial, trigger=trigger, resupply=trigger + 2)
    return replace(
        study,
        slug=STUDY,
        visits=tuple(v for v in study.visits if v.code == "D1"),
        supply=replace(study.supply, levels=dict.fromkeys(study.supply.levels, levels)),
    )


def per_type_rule(study: Study, view: leaks.ReviewView) -> int:
    """A toy rule that reads each type's own stock (so depends on the arms): one set when a
    type's stock falls below its trigger + 2."""
    levels = study.supply.levels
    return int(any(n < levels[t].trigger + 2 for t, n in view.stock_by_type.items()))


def arms_of(types: dict[str, str]) -> dict[str, str]:
    """The arms of the one-visit study's subjects (named by their kit) from the kit's type."""
    return {n: "PLACEBO" if t == "KT_PBO" else "CYT107_QW" for n, t in types.items()}


class TestReviewTiming:
    """Channel 3 (c): whether a daily review ships, against pairs of visits between reviews."""

    DAY = timedelta(days=1)

    def sites(
        self, outcomes: list[tuple[str, str, bool]], initial: int = 40, visit: str = "V1"
    ) -> tuple[Observations, dict[str, str]]:
        """One site an outcome: `initial` kits (half of each type) received the day before,
        two subjects dosed on day 0 with kits of the given types, a resupply shipment from
        the review of day 1 when told, and an emergency one on day 3 (so the site knows its
        depot could still ship at day 1); each received the day after it was made."""
        obs, types = Observations(), {}

        def receive(site: str, kind: str, made: datetime, numbers: list[str]) -> None:
            kits = tuple(kit(n) for n in numbers)
            shipment = SeenShipment(
                obs.next_seq(),
                STUDY,
                site,
                f"SH-{site}-{made.day}",
                kind,
                made,
                made + self.DAY,
                kits,
            )
            obs.shipments.append(shipment)

        for i, (first, second, shipped) in enumerate(outcomes):
            site = f"S{i}"
            half = initial // 2
            numbers = [f"{site}-X", f"{site}-Y"] + [f"{site}-{n}" for n in range(2 * half - 2)]
            receive(site, "initial", T0 - self.DAY, numbers)
            for subject, kit_type in (("X", first), ("Y", second)):
                number = f"{site}-{subject}"
                types[number] = kit_type
                obs.dispensations.append(
                    SeenDispensation(
                        obs.next_seq(), STUDY, site, number, visit, 0, T0, (kit(number),)
                    )
                )
            if shipped:
                receive(site, "resupply", T0 + self.DAY, [f"{site}-R1", f"{site}-R2"])
            receive(site, "emergency", T0 + 3 * self.DAY, [f"{site}-L1", f"{site}-L2"])
        return obs, types

    def test_shipments_after_same_type_pairs_tell_them_apart(self) -> None:
        outcomes = [("A", "A", True), ("A", "B", False), ("B", "B", True), ("B", "A", False)]
        obs, types = self.sites(outcomes * 2)
        windows = leaks.review_windows(obs)
        assert {(w.review - T0.date()).days for w in windows} == {1, 2, 3}
        day_one = [w for w in windows if w.review == T0.date() + self.DAY]
        assert [(w.shipped, w.told, len(w.dispensations)) for w in day_one[:2]] == [
            (True, True, 2),
            (False, True, 2),
        ]
        found = leaks.review_ship_auc(windows, truth(types))
        assert (found.reviews, found.shipped, found.pairs) == (24, 4, 8)
        assert found.auc == 1.0

    def test_shipments_regardless_of_type_say_nothing(self) -> None:
        outcomes = [("A", "A", True), ("A", "B", True), ("B", "B", False), ("B", "A", False)]
        obs, types = self.sites(outcomes)
        assert leaks.review_ship_auc(leaks.review_windows(obs), truth(types)).auc == 0.5

    def test_no_shipment_after_the_last_one_tells_nothing(self) -> None:
        """The depot may have run out: a review that shipped nothing after the last one
        that shipped to the site is not read."""
        obs, types = self.sites([("A", "A", False)])
        obs.shipments = [s for s in obs.shipments if s.kind == "initial"]  # none later
        obs.dispensations.append(
            SeenDispensation(obs.next_seq(), STUDY, "S0", "Z", "V1", 0, T0 + 2 * self.DAY, ())
        )
        windows = leaks.review_windows(obs)
        assert [(w.shipped, w.told) for w in windows] == [(False, False)]
        assert leaks.review_ship_auc(windows, truth(types)).pairs == 0

    def test_enumerating_arms_under_an_arm_dependent_rule_names_pairs(self) -> None:
        """6 kits of each type, two subjects a site, one kit each, and a toy rule on each
        type's own stock (ship when one falls below 5): a site that used two kits of one type
        is shipped, one of each is not, so every pair is made certain, and rightly."""
        study = one_visit_study(initial=6, trigger=3)
        il7, pbo = "KT_IL7", "KT_PBO"
        outcomes = [(il7, il7, True), (il7, pbo, False), (pbo, pbo, True), (pbo, il7, False)]
        obs, types = self.sites(outcomes, initial=12, visit="D1")
        found = leaks.review_enumeration(
            obs, {STUDY: study}, truth(types, arms_of(types)), rule=per_type_rule
        )
        assert (found.sites, found.enumerated, found.contradicted, found.matched) == (4, 4, 0, 4)
        assert (found.pairs, found.certain, found.certain_right) == (4, 4, 4)
        assert found.auc == 1.0

    def test_the_documented_rule_tells_nothing(self) -> None:
        """The same sites under the documented rule: at the review of day 1 each site used 2
        of its 6 sets (low 6 - ceil(2/3 x 2) = 4) and expects its 2 subjects' kits again
        (want ceil(2/3 x 2) + 3 = 5), so it is shipped whatever the types; every assignment
        of arms is kept, and no pair moves from the dispensing table's prior."""
        study = one_visit_study(initial=6, trigger=3)
        il7, pbo = "KT_IL7", "KT_PBO"
        outcomes = [(il7, il7, True), (il7, pbo, True), (pbo, pbo, True), (pbo, il7, True)]
        obs, types = self.sites(outcomes, initial=12, visit="D1")
        found = leaks.review_enumeration(obs, {STUDY: study}, truth(types, arms_of(types)))
        assert (found.sites, found.enumerated, found.contradicted, found.matched) == (4, 4, 0, 4)
        assert found.kept == found.assignments == 4 * 3**2
        assert (found.pairs, found.certain, found.shifted) == (4, 0, 0)
        assert found.auc == 0.5

    def test_a_review_the_rule_would_not_make_contradicts_the_replay(self) -> None:
        study = one_visit_study(initial=6, trigger=3)
        obs, types = self.sites([("KT_IL7", "KT_PBO", False)], initial=12, visit="D1")
        found = leaks.review_enumeration(obs, {STUDY: study}, truth(types, arms_of(types)))
        assert (found.contradicted, found.matched) == (1, 0)
        assert found.mismatches[0] == "S0 2027-03-02: replayed True, seen False"

    def test_a_refusal_seen_makes_the_share_one_from_the_next_review(self) -> None:
        """A refusal names the simulated day: its date is read from the events seen before
        it. From the next review on, a refusal for supply of a later visit makes the site's
        share 1 (every kit gone counted against each type); one of the first visit does not
        (app.services.resupply)."""
        obs = Observations()
        for day, visit in ((0, "D4"), (0, "D1"), (1, "D4")):
            at = T0 + day * self.DAY
            obs.dispensations.append(
                SeenDispensation(obs.next_seq(), STUDY, "S0", "X", "D1", 0, at, (kit("A1"),))
            )
            for code in ("insufficient_supply", "visit_not_allowed"):
                obs.refusals.append(
                    SeenRefusal(obs.next_seq(), STUDY, "S0", "Y", visit, 1, code, day)
                )
        today = T0.date()
        assert leaks._refusal_dates(obs) == {
            (STUDY, "S0"): [(today, "D4"), (today, "D1"), (today + self.DAY, "D4")]
        }
        study = replace(one_visit_study(initial=40, trigger=3), visits=IRIS.visits)
        sites, _types = self.sites([("KT_IL7", "KT_PBO", True)], initial=80, visit="D1")
        reviews = [today + self.DAY, today + 2 * self.DAY]

        def shares(refusals: list[tuple[date, str]]) -> list[Fraction]:
            found = leaks._site_counts(
                study, sites.shipments, sites.dispensations, refusals, reviews
            )
            return [share for _counts, share in found]

        assert shares([(today, "D1")]) == [Fraction(2, 3)] * 2
        assert shares([(today + self.DAY, "D4")]) == [Fraction(2, 3), 1]
        # the two subjects expected again (randomized within 4 days), and their D4 visits
        found = leaks._site_counts(study, sites.shipments, sites.dispensations, [], reviews)
        assert found[0][0] == SiteCounts(shipped=40, stock=78, demand=2 + 2)

    def test_a_site_never_short_tells_nothing(self) -> None:
        study = one_visit_study(initial=40, trigger=3)
        il7, pbo = "KT_IL7", "KT_PBO"
        outcomes = [(il7, il7, False), (il7, pbo, False), (pbo, pbo, False), (pbo, il7, False)]
        obs, types = self.sites(outcomes, initial=80, visit="D1")
        found = leaks.review_enumeration(obs, {STUDY: study}, truth(types, arms_of(types)))
        assert (found.contradicted, found.matched, found.certain, found.shifted) == (0, 4, 0, 0)
        assert found.auc == 0.5
