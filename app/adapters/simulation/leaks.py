"""Side channels of the blind, measured over what a simulated trial's site roles were told.

Pure functions over recorded observations (no HTTP, no database): the runner records what
the pharmacists, the investigators and the EDC received (`Observations`), and the ground
truth (`Truth`: each kit's type, each subject's arm, the dispensing table) is read with the
key after the run. The ATTACKER side of every measure uses only the observations and the
documented rules; the truth only labels the attacker's guesses.

Channels (issue 17):
1. Lots and expiry (`lot_order`, `shelf_order_auc`, `lot_pair_auc`). Replaying each site's
   shelf as the site can know it (received kits minus damaged, dispensed and expired ones),
   whenever a visit's kits are handed out while kits of an earlier (expiry, lot) stay on the
   shelf, those earlier kits must not be predictably of the other type: their share of the
   dispensed type is compared with that type's share of the whole shelf then. Pair AUCs:
   "earlier than the kit handed out" and "of another lot" as scores for "of another type".
2. Refusals (`refusal_pairs`). An `insufficient_supply` refusal of a later visit, followed
   at the same site, with no delivery between, by another subject served: if refusals did
   not depend on the type, the refused and the served visit would differ in type about as
   often as any two later visits do.
3. Resupply (`shipment_timing`, `shipment_composition`, `shipment_size_auc`). A resupply
   shipment created at the exact time of a dispensation at its site names the visit that
   triggered it; per-type counts that are not whole sets, or a shipment missing a type,
   follow which type ran low. AUC: a shipment's size as the score for "two of its kits are
   of different types" (small shipments are lopsided under a trigger/restore rule).
   Whether a daily review ships (`review_windows`, `review_ship_auc`, `review_enumeration`):
   pairs of visits of two subjects at a site between two reviews, against the next review's
   ship / no-ship as the site saw it; a simple score (no shipment: "different"), and the
   issue's attacker, who replays the documented rule (app.domain.resupply, fed with the
   figures the site counts itself) over every assignment of arms to the site's subjects
   and keeps those that match every review (a rule blind to the arms keeps all or none;
   one that read each type's stock would keep few). Both AUCs compare only pairs of the
   same two visit codes, so the dispensing table's own information is not counted.

Every AUC is the Mann-Whitney probability that a pair of different types scores above a
pair of one type (ties count half): 0.5 means the score says nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from itertools import combinations
from typing import Any

from app.domain.resupply import OnTreatment, SiteCounts, coming_demand, resupply_sets, top_share
from app.domain.study import Study

Key = tuple[str, str]  # (study, kit number) or (study, subject)


@dataclass(frozen=True, slots=True)
class SeenKit:
    number: str
    lot: str
    expiry: date

    @property
    def order(self) -> tuple[date, str]:
        """The order a site can see: expiry, then lot code."""
        return (self.expiry, self.lot)


@dataclass(frozen=True, slots=True)
class SeenShipment:
    """A shipment as the site's pharmacist saw it when receiving it (`seq`: when)."""

    seq: int
    study: str
    site: str
    shipment_id: str
    kind: str
    created_at: datetime
    received_at: datetime | None
    kits: tuple[SeenKit, ...]
    damaged: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeenDispensation:
    """Kits handed out at a visit (visit_index 0: with the randomization)."""

    seq: int
    study: str
    site: str
    subject: str
    visit: str
    visit_index: int
    at: datetime
    kits: tuple[SeenKit, ...]


@dataclass(frozen=True, slots=True)
class SeenRefusal:
    seq: int
    study: str
    site: str
    subject: str
    visit: str
    visit_index: int
    code: str
    day: int


@dataclass(frozen=True, slots=True)
class SeenEnd:
    """A subject discontinued or completed (the site ends them itself): from then on not
    demand for resupply."""

    seq: int
    study: str
    site: str
    subject: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SeenRecord:
    """A visit the site recorded missed or its dose held: settled, no longer demand."""

    seq: int
    study: str
    site: str
    subject: str
    visit: str
    at: datetime


@dataclass
class Observations:
    """Everything recorded, each event numbered in the order it was seen (`seq`)."""

    shipments: list[SeenShipment] = field(default_factory=list)
    dispensations: list[SeenDispensation] = field(default_factory=list)
    refusals: list[SeenRefusal] = field(default_factory=list)
    ends: list[SeenEnd] = field(default_factory=list)
    records: list[SeenRecord] = field(default_factory=list)
    counter: int = 0

    def next_seq(self) -> int:
        self.counter += 1
        return self.counter

    def to_json(self) -> dict[str, Any]:
        def kit(k: SeenKit) -> list[str]:
            return [k.number, k.lot, k.expiry.isoformat()]

        return {
            "shipments": [
                {
                    "seq": s.seq,
                    "study": s.study,
                    "site": s.site,
                    "shipment_id": s.shipment_id,
                    "kind": s.kind,
                    "created_at": s.created_at.isoformat(),
                    "received_at": s.received_at.isoformat() if s.received_at else None,
                    "kits": [kit(k) for k in s.kits],
                    "damaged": list(s.damaged),
                }
                for s in self.shipments
            ],
            "dispensations": [
                {
                    "seq": d.seq,
                    "study": d.study,
                    "site": d.site,
                    "subject": d.subject,
                    "visit": d.visit,
                    "at": d.at.isoformat(),
                    "kits": [kit(k) for k in d.kits],
                }
                for d in self.dispensations
            ],
            "refusals": [
                {
                    "seq": r.seq,
                    "study": r.study,
                    "site": r.site,
                    "subject": r.subject,
                    "visit": r.visit,
                    "code": r.code,
                    "day": r.day,
                }
                for r in self.refusals
            ],
            "ends": [
                {
                    "seq": e.seq,
                    "study": e.study,
                    "site": e.site,
                    "subject": e.subject,
                    "at": e.at.isoformat(),
                }
                for e in self.ends
            ],
            "records": [
                {
                    "seq": r.seq,
                    "study": r.study,
                    "site": r.site,
                    "subject": r.subject,
                    "visit": r.visit,
                    "at": r.at.isoformat(),
                }
                for r in self.records
            ],
        }


@dataclass(frozen=True)
class Truth:
    """What only the key tells: kit types by (study, kit number), arms by (study, subject),
    and each study's dispensing table (arm, visit) -> kit type."""

    kit_type: Mapping[Key, str]
    arm: Mapping[Key, str]
    dispensing: Mapping[str, Mapping[tuple[str, str], str]]

    def visit_type(self, study: str, subject: str, visit: str) -> str | None:
        arm = self.arm.get((study, subject))
        if arm is None:
            return None
        return self.dispensing[study].get((arm, visit))

    def types(self, study: str) -> set[str]:
        return set(self.dispensing[study].values())


# --- shared helpers -------------------------------------------------------------------------


def auc(positives: Counter[float], negatives: Counter[float]) -> float | None:
    """P(score of a positive > score of a negative) + half the ties; None without both."""
    n_pos, n_neg = sum(positives.values()), sum(negatives.values())
    if not n_pos or not n_neg:
        return None
    wins = 0.0
    below = 0  # negatives scoring strictly less than the current score
    for score in sorted(set(positives) | set(negatives)):
        pos, neg = positives.get(score, 0), negatives.get(score, 0)
        wins += pos * below + 0.5 * pos * neg
        below += neg
    return wins / (n_pos * n_neg)


def binomial_margin(p: float, n: int, sigmas: float = 3.0) -> float:
    """`sigmas` standard errors of a share p over n draws."""
    return sigmas * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def _site_events(
    obs: Observations,
) -> dict[tuple[str, str], list[SeenShipment | SeenDispensation]]:
    events: dict[tuple[str, str], list[SeenShipment | SeenDispensation]] = defaultdict(list)
    for shipment in obs.shipments:
        events[(shipment.study, shipment.site)].append(shipment)
    for dispensation in obs.dispensations:
        events[(dispensation.study, dispensation.site)].append(dispensation)
    for found in events.values():
        found.sort(key=lambda e: e.seq)
    return events


# --- channel 1: lots and expiry -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShelfEvent:
    """A dispensation with the shelf as the site knew it just before (the kits handed out
    excluded, and those past their expiry date)."""

    study: str
    site: str
    seq: int
    dispensed: tuple[SeenKit, ...]
    shelf: tuple[SeenKit, ...]

    @property
    def earlier(self) -> tuple[SeenKit, ...]:
        """Shelf kits before the latest kit handed out, in the order the site can see."""
        latest = max(k.order for k in self.dispensed)
        return tuple(k for k in self.shelf if k.order < latest)


def shelf_events(obs: Observations) -> list[ShelfEvent]:
    found: list[ShelfEvent] = []
    for (study, site), events in sorted(_site_events(obs).items()):
        shelf: dict[str, SeenKit] = {}
        for event in events:
            if isinstance(event, SeenShipment):
                shelf.update({k.number: k for k in event.kits if k.number not in event.damaged})
                continue
            if not event.kits:
                continue
            taken = {k.number for k in event.kits}
            today = event.at.date()
            visible = tuple(
                k for n, k in sorted(shelf.items()) if n not in taken and k.expiry >= today
            )
            found.append(ShelfEvent(study, site, event.seq, event.kits, visible))
            for number in taken:
                shelf.pop(number, None)
    return found


@dataclass(frozen=True)
class LotOrder:
    """Channel 1 (a): at dispensations that left earlier kits on the shelf, the share of the
    dispensed type among those earlier kits against its share of the whole shelf then."""

    dispensations: int
    skip_events: int  # dispensations that left at least one earlier kit on the shelf
    earlier_kits: int  # summed over skip events
    same_type_earlier: int
    expected_same_type_earlier: float

    @property
    def observed_share(self) -> float:
        return self.same_type_earlier / self.earlier_kits if self.earlier_kits else math.nan

    @property
    def expected_share(self) -> float:
        return self.expected_same_type_earlier / self.earlier_kits if self.earlier_kits else 0.0


def lot_order(events: Sequence[ShelfEvent], truth: Truth) -> LotOrder:
    skips = kits = same = 0
    expected = 0.0
    for event in events:
        earlier = event.earlier
        if not earlier or not event.shelf:
            continue
        kit_type = truth.kit_type[(event.study, event.dispensed[0].number)]
        shelf_types = [truth.kit_type[(event.study, k.number)] for k in event.shelf]
        share = shelf_types.count(kit_type) / len(shelf_types)
        skips += 1
        kits += len(earlier)
        same += sum(1 for k in earlier if truth.kit_type[(event.study, k.number)] == kit_type)
        expected += share * len(earlier)
    return LotOrder(len(events), skips, kits, same, expected)


def shelf_order_auc(events: Sequence[ShelfEvent], truth: Truth) -> tuple[float | None, int]:
    """Channel 1 (b): at each skip event, every shelf kit paired with the kit type handed
    out; score 1 when the shelf kit is earlier (the FEFO attacker says "other type").
    Returns the AUC and the number of pairs."""
    differ: Counter[float] = Counter()
    same: Counter[float] = Counter()
    for event in events:
        earlier = {k.number for k in event.earlier}
        if not earlier:
            continue
        kit_type = truth.kit_type[(event.study, event.dispensed[0].number)]
        for kit in event.shelf:
            score = 1.0 if kit.number in earlier else 0.0
            if truth.kit_type[(event.study, kit.number)] == kit_type:
                same[score] += 1
            else:
                differ[score] += 1
    return auc(differ, same), sum(differ.values()) + sum(same.values())


def lot_pair_auc(obs: Observations, truth: Truth) -> tuple[float | None, int]:
    """Channel 1 (b'): pairs of kits on a site's shelf at the same time; score 1 when their
    lot codes differ. Returns the AUC and the number of pairs."""
    differ: Counter[float] = Counter()
    same: Counter[float] = Counter()
    for (study, _site), events in sorted(_site_events(obs).items()):
        spans: dict[str, tuple[SeenKit, int, int]] = {}
        for event in events:
            if isinstance(event, SeenShipment):
                for kit in event.kits:
                    if kit.number not in event.damaged:
                        spans[kit.number] = (kit, event.seq, 1 << 62)
            else:
                for kit in event.kits:
                    if kit.number in spans:
                        seen, start, _ = spans[kit.number]
                        spans[kit.number] = (seen, start, event.seq)
        for (a, a0, a1), (b, b0, b1) in combinations(spans.values(), 2):
            if a0 >= b1 or b0 >= a1:
                continue
            score = 1.0 if a.lot != b.lot else 0.0
            if truth.kit_type[(study, a.number)] != truth.kit_type[(study, b.number)]:
                differ[score] += 1
            else:
                same[score] += 1
    return auc(differ, same), sum(differ.values()) + sum(same.values())


@dataclass(frozen=True)
class ArmCalls:
    """Channel 1 (c): the subjects whose arm an attacker decides from lots alone."""

    subjects: int
    called: int  # one arm left under the attacker's model (its posterior: 1)
    right: int
    components: int
    conflicted: int  # components whose evidence contradicts itself (ignored)


class _Parity:
    """Union-find with the parity of each kit to its root: 0 same type, 1 other type."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.parity: dict[str, int] = {}
        self.conflicted: set[str] = set()

    def find(self, kit: str) -> tuple[str, int]:
        if kit not in self.parent:
            self.parent[kit], self.parity[kit] = kit, 0
        path: list[str] = []
        while self.parent[kit] != kit:
            path.append(kit)
            kit = self.parent[kit]
        root, acc = kit, 0
        for node in reversed(path):
            acc ^= self.parity[node]
            self.parent[node], self.parity[node] = root, acc
        return root, acc

    def union(self, a: str, b: str, differ: int) -> None:
        (ra, pa), (rb, pb) = self.find(a), self.find(b)
        if ra == rb:
            if pa ^ pb != differ:
                self.conflicted.add(ra)
            return
        self.parent[rb], self.parity[rb] = ra, pa ^ pb ^ differ
        if rb in self.conflicted:
            self.conflicted.add(ra)


def lot_arm_calls(obs: Observations, events: Sequence[ShelfEvent], truth: Truth) -> ArmCalls:
    """An attacker who believes first-expiry-first-out by type: every kit handed out is of
    another type than each earlier kit left on the shelf, and the kits of one visit are of
    one type. Kits fall into components two-coloured by that evidence (a component whose
    evidence contradicts itself is ignored); with the dispensing table (the protocol's
    double-dummy design), each component's colours are named and each subject's arms are
    narrowed until nothing changes. A subject with one arm left is called."""
    parity = _Parity()
    for d in obs.dispensations:
        for kit in d.kits[1:]:
            parity.union(f"{d.study}/{d.kits[0].number}", f"{d.study}/{kit.number}", 0)
    for event in events:
        handed = f"{event.study}/{event.dispensed[0].number}"
        for kit in event.earlier:
            parity.union(handed, f"{event.study}/{kit.number}", 1)

    visits: dict[Key, list[tuple[str, str, int]]] = defaultdict(list)  # (visit, root, colour)
    for d in obs.dispensations:
        if d.kits:
            root, colour = parity.find(f"{d.study}/{d.kits[0].number}")
            if root not in parity.conflicted:
                visits[(d.study, d.subject)].append((d.visit, root, colour))
    arms_of: dict[str, list[str]] = {
        study: sorted({arm for arm, _visit in table}) for study, table in truth.dispensing.items()
    }
    types_of = {study: sorted(truth.types(study)) for study in truth.dispensing}
    # A component's naming: which type colour 0 is (colour 1 is the other; two types only).
    naming: dict[str, set[str]] = {
        root: set(types_of[subject[0]]) for subject, seen in visits.items() for _, root, _ in seen
    }

    def fits(subject: Key, arm: str, fixed: tuple[str, str] | None = None) -> bool:
        study = subject[0]
        for root in {r for _, r, _ in visits[subject]}:
            options = {fixed[1]} if fixed and fixed[0] == root else naming[root]
            if not any(
                all(
                    truth.dispensing[study].get((arm, v))
                    == (zero if c == 0 else _other(types_of[study], zero))
                    for v, r, c in visits[subject]
                    if r == root
                )
                for zero in options
            ):
                return False
        return True

    subjects_of: dict[str, set[Key]] = defaultdict(set)
    for subject, seen in visits.items():
        for _, root, _ in seen:
            subjects_of[root].add(subject)
    changed = True
    while changed:
        changed = False
        for root, options in naming.items():
            for zero in sorted(options):
                if len(options) > 1 and not all(
                    any(fits(s, a, (root, zero)) for a in arms_of[s[0]]) for s in subjects_of[root]
                ):
                    options.discard(zero)
                    changed = True
    called = right = 0
    for subject in visits:
        if len(types_of[subject[0]]) != 2:
            continue
        left = [a for a in arms_of[subject[0]] if fits(subject, a)]
        if len(left) == 1:
            called += 1
            right += truth.arm.get(subject) == left[0]
    roots = {parity.find(k)[0] for k in parity.parent}
    return ArmCalls(
        subjects=len({(d.study, d.subject) for d in obs.dispensations}),
        called=called,
        right=right,
        components=len(roots),
        conflicted=len(roots & parity.conflicted),
    )


def _other(types: list[str], one: str) -> str:
    return types[1] if types[0] == one else types[0]


# --- channel 2: refusals --------------------------------------------------------------------


def later_visit_refusals(obs: Observations) -> list[SeenRefusal]:
    return [r for r in obs.refusals if r.visit_index > 0 and r.code == "insufficient_supply"]


def later_visit_rate(obs: Observations) -> tuple[int, int]:
    """(later visits refused at least once, later visits attempted), distinct visits."""
    refused = {(r.study, r.subject, r.visit) for r in later_visit_refusals(obs)}
    served = {(d.study, d.subject, d.visit) for d in obs.dispensations if d.visit_index > 0}
    return len(refused), len(refused | served)


@dataclass(frozen=True)
class RefusalPairs:
    """Channel 2: each later-visit refusal followed at its site, before the next delivery
    there, by other subjects served; the share of those served of another type than the
    refused visit (averaged by refusal), and what it would be if refusals did not depend
    on the type (from each served type's share at the refused visit). Also pairs of
    refusals at a site with no delivery between. The first refusal of each visit only."""

    refusals: int
    refusals_with_pairs: int
    pairs: int
    different_pairs: int
    observed: float  # mean, over refusals with pairs, of their share of different pairs
    expected: float
    refused_pairs: int
    refused_pairs_same: int

    @property
    def margin(self) -> float:
        return max(0.15, binomial_margin(self.expected, self.refusals_with_pairs))


def first_refusals(obs: Observations) -> list[SeenRefusal]:
    """The first later-visit refusal of each visit (a refused visit is retried daily)."""
    seen: set[tuple[str, str, str]] = set()
    first = []
    for refusal in sorted(later_visit_refusals(obs), key=lambda r: r.seq):
        if (refusal.study, refusal.subject, refusal.visit) not in seen:
            seen.add((refusal.study, refusal.subject, refusal.visit))
            first.append(refusal)
    return first


class _Demand:
    """Each later visit's kit types, over every subject who reached it (served or refused):
    what an attacker knows of a visit's type from the protocol and the enrolment alone."""

    def __init__(self, by_visit: dict[tuple[str, str], Counter[str]]) -> None:
        self.by_visit = by_visit

    def share(self, study: str, visit: str, kit_type: str) -> float:
        counts = self.by_visit.get((study, visit), Counter())
        total = sum(counts.values())
        return counts[kit_type] / total if total else 0.0


def _later_type_shares(obs: Observations, truth: Truth) -> _Demand:
    demand: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    seen: set[tuple[str, str, str]] = set()
    later = [
        *((d.study, d.subject, d.visit) for d in obs.dispensations if d.visit_index > 0),
        *((r.study, r.subject, r.visit) for r in later_visit_refusals(obs)),
    ]
    for study, subject, visit in later:
        if (study, subject, visit) in seen:
            continue
        seen.add((study, subject, visit))
        kit_type = truth.visit_type(study, subject, visit)
        if kit_type is not None:
            demand[(study, visit)][kit_type] += 1
    return _Demand(demand)


def refusal_pairs(obs: Observations, truth: Truth) -> RefusalPairs:
    refusals = first_refusals(obs)
    demand = _later_type_shares(obs, truth)
    deliveries: dict[tuple[str, str], list[int]] = defaultdict(list)
    for shipment in obs.shipments:
        deliveries[(shipment.study, shipment.site)].append(shipment.seq)
    served: dict[tuple[str, str], list[SeenDispensation]] = defaultdict(list)
    for d in sorted(obs.dispensations, key=lambda d: d.seq):
        served[(d.study, d.site)].append(d)
    by_site: dict[tuple[str, str], list[SeenRefusal]] = defaultdict(list)
    for r in sorted(refusals, key=lambda r: r.seq):
        by_site[(r.study, r.site)].append(r)

    def next_delivery(place: tuple[str, str], seq: int) -> int:
        return min((s for s in deliveries[place] if s > seq), default=1 << 62)

    with_pairs = pairs = differ = 0
    observed = expected = 0.0
    refused_pairs = refused_same = 0
    for place, found in by_site.items():
        study = place[0]
        for i, refusal in enumerate(found):
            refused_type = truth.visit_type(study, refusal.subject, refusal.visit)
            if refused_type is None:
                continue
            until = next_delivery(place, refusal.seq)
            types = [
                truth.visit_type(study, d.subject, d.visit)
                for d in served[place]
                if refusal.seq < d.seq < until and d.subject != refusal.subject
            ]
            known = [t for t in types if t is not None]
            if known:
                with_pairs += 1
                pairs += len(known)
                n_diff = sum(1 for t in known if t != refused_type)
                differ += n_diff
                observed += n_diff / len(known)
                expected += sum(1 - demand.share(study, refusal.visit, t) for t in known) / len(
                    known
                )
            for later in found[i + 1 :]:
                if later.seq >= until:
                    break
                if later.subject == refusal.subject:
                    continue
                other = truth.visit_type(study, later.subject, later.visit)
                if other is not None:
                    refused_pairs += 1
                    refused_same += other == refused_type
    return RefusalPairs(
        refusals=len(refusals),
        refusals_with_pairs=with_pairs,
        pairs=pairs,
        different_pairs=differ,
        observed=observed / with_pairs if with_pairs else math.nan,
        expected=expected / with_pairs if with_pairs else math.nan,
        refused_pairs=refused_pairs,
        refused_pairs_same=refused_same,
    )


@dataclass(frozen=True)
class RefusalShortage:
    """Channel 2, per refusal: was the refused visit's type the scarcest on the shelf (as
    the site knew it, types from the truth)? If refusals did not depend on the type, the
    refused type would be the scarcest only as often as it is demanded at that visit by the
    site's other subjects (a site whose subjects happen to be mostly of one arm runs short of
    that arm's type, and its refused subjects are mostly of that arm too, whatever the rule:
    the global demand would flag that as a leak; with fewer than 3 other subjects at the
    visit, the study's demand). The first refusal of each visit only."""

    refusals: int  # first refusals of a visit when one type was scarcer than every other
    refused_type_short: int
    expected: float


def refusal_shortage(obs: Observations, truth: Truth) -> RefusalShortage:
    refusals = first_refusals(obs)
    demand = _later_type_shares(obs, truth)
    local = _site_visit_types(obs, truth)
    shelves = _shelves_at(obs, {r.seq for r in refusals})
    judged = short_hits = 0
    expected = 0.0
    for refusal in refusals:
        refused_type = truth.visit_type(refusal.study, refusal.subject, refusal.visit)
        if refused_type is None:
            continue
        shelf = shelves.get(refusal.seq, ())
        stock = Counter(truth.kit_type[(refusal.study, k.number)] for k in shelf)
        types = truth.types(refusal.study)
        fewest = min(stock[t] for t in types)
        short = {t for t in types if stock[t] == fewest}
        if len(short) != 1:
            continue
        judged += 1
        short_hits += refused_type in short
        others = [
            kit_type
            for subject, kit_type in local.get((refusal.study, refusal.site, refusal.visit), [])
            if subject != refusal.subject
        ]
        if len(others) >= 3:
            expected += sum(1 for t in others if t in short) / len(others)
        else:
            expected += sum(demand.share(refusal.study, refusal.visit, t) for t in short)
    return RefusalShortage(judged, short_hits, expected / judged if judged else math.nan)


def _site_visit_types(
    obs: Observations, truth: Truth
) -> dict[tuple[str, str, str], list[tuple[str, str]]]:
    """(study, site, visit) -> (subject, kit type) of every subject who reached that later
    visit at that site, served or refused, once each."""
    found: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()
    later = [
        *((d.study, d.site, d.subject, d.visit) for d in obs.dispensations if d.visit_index > 0),
        *((r.study, r.site, r.subject, r.visit) for r in later_visit_refusals(obs)),
    ]
    for study, site, subject, visit in later:
        if (study, subject, visit) in seen:
            continue
        seen.add((study, subject, visit))
        kit_type = truth.visit_type(study, subject, visit)
        if kit_type is not None:
            found[(study, site, visit)].append((subject, kit_type))
    return found


def _shelves_at(obs: Observations, seqs: set[int]) -> dict[int, tuple[SeenKit, ...]]:
    """The shelf of the refusal's site as the site knew it at each refusal in `seqs`."""
    at: dict[int, tuple[SeenKit, ...]] = {}
    by_site: dict[tuple[str, str], list[int]] = defaultdict(list)
    for refusal in obs.refusals:
        if refusal.seq in seqs:
            by_site[(refusal.study, refusal.site)].append(refusal.seq)
    for place, events in _site_events(obs).items():
        wanted = sorted(by_site.get(place, []))
        shelf: dict[str, SeenKit] = {}
        timeline: list[tuple[int, SeenShipment | SeenDispensation | None]] = [
            *((e.seq, e) for e in events),
            *((s, None) for s in wanted),
        ]
        today: date | None = None
        for seq, event in sorted(timeline, key=lambda x: x[0]):
            if event is None:
                at[seq] = tuple(k for k in shelf.values() if today is None or k.expiry >= today)
            elif isinstance(event, SeenShipment):
                shelf.update({k.number: k for k in event.kits if k.number not in event.damaged})
            else:
                today = event.at.date()
                for kit in event.kits:
                    shelf.pop(kit.number, None)
    return at


# --- channel 3: resupply --------------------------------------------------------------------


@dataclass(frozen=True)
class ShipmentTiming:
    resupply_shipments: int
    at_a_dispensation: int  # created at the exact time of a dispensation at its site
    examples: tuple[str, ...]


def shipment_timing(obs: Observations) -> ShipmentTiming:
    instants: dict[tuple[str, str], set[datetime]] = defaultdict(set)
    for d in obs.dispensations:
        instants[(d.study, d.site)].add(d.at)
    resupply = [s for s in obs.shipments if s.kind in ("resupply", "emergency")]
    hits = [s for s in resupply if s.created_at in instants[(s.study, s.site)]]
    return ShipmentTiming(len(resupply), len(hits), tuple(s.shipment_id for s in hits[:5]))


@dataclass(frozen=True)
class ShipmentComposition:
    shipments: int
    resupply_shipments: int
    single_type: int  # shipments missing at least one of the study's kit types
    not_whole_sets: int  # resupply shipments whose per-type counts differ
    examples: tuple[tuple[str, dict[str, int]], ...]


def shipment_composition(obs: Observations, truth: Truth) -> ShipmentComposition:
    single = uneven = 0
    examples: list[tuple[str, dict[str, int]]] = []
    for shipment in obs.shipments:
        types = truth.types(shipment.study)
        counts = Counter(truth.kit_type[(shipment.study, k.number)] for k in shipment.kits)
        by_type = {t: counts.get(t, 0) for t in sorted(types)}
        missing = any(n == 0 for n in by_type.values())
        unequal = shipment.kind in ("resupply", "emergency") and len(set(by_type.values())) > 1
        single += missing
        uneven += unequal
        if (missing or unequal) and len(examples) < 5:
            examples.append((shipment.shipment_id, by_type))
    resupply = sum(1 for s in obs.shipments if s.kind in ("resupply", "emergency"))
    return ShipmentComposition(len(obs.shipments), resupply, single, uneven, tuple(examples))


def shipment_size_auc(obs: Observations, truth: Truth) -> tuple[float | None, int]:
    """Pairs of kits of one resupply shipment; the shipment's size as the score for "of
    different types". Returns the AUC and the number of pairs."""
    differ: Counter[float] = Counter()
    same: Counter[float] = Counter()
    for shipment in obs.shipments:
        if shipment.kind != "resupply":
            continue
        counts = Counter(truth.kit_type[(shipment.study, k.number)] for k in shipment.kits)
        size = float(len(shipment.kits))
        total_pairs = len(shipment.kits) * (len(shipment.kits) - 1) // 2
        same_pairs = sum(n * (n - 1) // 2 for n in counts.values())
        same[size] += same_pairs
        differ[size] += total_pairs - same_pairs
    return auc(differ, same), sum(differ.values()) + sum(same.values())


# --- channel 3 (c): whether a daily review ships --------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewWindow:
    """A site's dispensations between two consecutive daily reviews, and whether the second
    review sent the site a resupply shipment (as the site saw it: a shipment received with
    its creation time on the review's date). `told`: whether that says what the rule
    decided: a shipment always does; no shipment does only while the depot could still
    make a whole set, which the site knows up to the day of the last resupply or emergency
    shipment it was sent (a depot's stock only falls)."""

    study: str
    site: str
    review: date
    shipped: bool
    told: bool
    dispensations: tuple[SeenDispensation, ...]


def review_windows(obs: Observations) -> list[ReviewWindow]:
    """Each site's daily reviews, from the day after its first dispensation to the day
    before the study's last observed day (a shipment created at a later review may not
    have been received yet): the reviews run once a day at the day's start, before any
    dispensation of that day, so the dispensations of a date D-1 fall between the reviews
    of D-1 and D. Emergency shipments (made at a refusal, not at a review) are no
    review's decision."""
    last: dict[str, date] = {}
    for d in obs.dispensations:
        last[d.study] = max(last.get(d.study, d.at.date()), d.at.date())
    for s in obs.shipments:
        if s.received_at is not None:
            last[s.study] = max(last.get(s.study, s.received_at.date()), s.received_at.date())
    shipped = {
        (s.study, s.site, s.created_at.date()) for s in obs.shipments if s.kind == "resupply"
    }
    last_shipped: dict[tuple[str, str], date] = {}  # the depot could still make a set
    for s in obs.shipments:
        if s.kind in ("resupply", "emergency"):
            place, day = (s.study, s.site), s.created_at.date()
            last_shipped[place] = max(last_shipped.get(place, day), day)
    by_site: dict[tuple[str, str], dict[date, list[SeenDispensation]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for d in sorted(obs.dispensations, key=lambda d: d.seq):
        by_site[(d.study, d.site)][d.at.date()].append(d)
    windows = []
    for (study, site), by_day in sorted(by_site.items()):
        day = min(by_day) + timedelta(days=1)
        while day < last[study]:
            sent = (study, site, day) in shipped
            windows.append(
                ReviewWindow(
                    study,
                    site,
                    day,
                    sent,
                    sent or day <= last_shipped.get((study, site), day - timedelta(days=1)),
                    tuple(by_day.get(day - timedelta(days=1), ())),
                )
            )
            day += timedelta(days=1)
    return windows


def _visit_pairs(
    window: ReviewWindow,
) -> Iterable[tuple[SeenDispensation, SeenDispensation]]:
    """Pairs of visits of two subjects in the window (a visit's kits are of one type)."""
    for a, b in combinations(window.dispensations, 2):
        if a.subject != b.subject and a.kits and b.kits:
            yield a, b


def _stratum(a: SeenDispensation, b: SeenDispensation) -> tuple[str, str, str]:
    first, second = sorted((a.visit, b.visit))
    return (a.study, first, second)


def _same(truth: Truth, a: SeenDispensation, b: SeenDispensation) -> bool:
    return (
        truth.kit_type[(a.study, a.kits[0].number)] == truth.kit_type[(b.study, b.kits[0].number)]
    )


class _Strata:
    """Scores of pairs of different and of one type, by stratum: the AUC compares pairs of
    one stratum only (here the two visits' codes), so what the dispensing table tells of a
    pair of visits by their codes alone is not taken for a leak."""

    def __init__(self) -> None:
        self.differ: dict[Any, Counter[float]] = defaultdict(Counter)
        self.same: dict[Any, Counter[float]] = defaultdict(Counter)

    def add(self, stratum: Any, score: float, same: bool) -> None:
        (self.same if same else self.differ)[stratum][score] += 1

    @property
    def pairs(self) -> int:
        return sum(sum(c.values()) for c in (*self.differ.values(), *self.same.values()))

    def auc(self) -> float | None:
        wins = total = 0.0
        for stratum, differ in self.differ.items():
            same = self.same.get(stratum, Counter())
            found = auc(differ, same)
            if found is not None:
                weight = sum(differ.values()) * sum(same.values())
                wins += found * weight
                total += weight
        return wins / total if total else None


@dataclass(frozen=True)
class ReviewShipAuc:
    """Channel 3 (c), the simple attacker: a pair of visits at one site between two reviews
    scores "of different types" when the next review shipped nothing (a type used twice
    is likelier to fall below its trigger). Stratified by the pair's visit codes."""

    reviews: int
    shipped: int
    pairs: int
    auc: float | None


def review_ship_auc(windows: Sequence[ReviewWindow], truth: Truth) -> ReviewShipAuc:
    strata = _Strata()
    told = [w for w in windows if w.told]
    for window in told:
        for a, b in _visit_pairs(window):
            strata.add(_stratum(a, b), 0.0 if window.shipped else 1.0, _same(truth, a, b))
    return ReviewShipAuc(
        reviews=len(told),
        shipped=sum(w.shipped for w in told),
        pairs=strata.pairs,
        auc=strata.auc(),
    )


@dataclass(frozen=True, slots=True)
class ReviewView:
    """One daily review as the attacker replays it: the figures the site counts itself
    (`counts`: kits of each type ever shipped to it, its stock of all types together, the
    arm-blind coming demand; `share`: the design's `top_share`, 1 once the site saw a visit
    refused for supply), and what an assignment of arms (and of types to the kits that left
    the stock unseen) adds: each type's stock under it, the kits of the type shipped less
    those of the type gone (dispensed, damaged, no longer dispensable)."""

    counts: SiteCounts
    share: Fraction
    stock_by_type: Mapping[str, int]


ReviewRule = Callable[[Study, ReviewView], int]  # the whole sets a review ships (0: none)


def documented_rule(study: Study, view: ReviewView) -> int:
    """The daily review as app.domain.resupply documents it: from the site's own counts."""
    return resupply_sets(study.supply.levels, view.counts, view.share)


@dataclass(frozen=True, slots=True)
class _Latent:
    """What the site does not know: a subject's arm, or the type of a kit that left its
    stock unseen (damaged at receipt, or no longer dispensable). `take[i]`: for option i,
    the kits it takes from each type's stock at each (review, type), flattened. `truth`:
    the key that names the true option (an arm by subject, a type by kit number)."""

    options: tuple[str, ...]
    weights: tuple[int, ...]
    first: int  # the first review it changes
    take: tuple[tuple[int, ...], ...]
    truth: tuple[str, str]  # ("arm", subject) or ("kit", number)


@dataclass(frozen=True)
class ReviewEnumeration:
    """Channel 3 (c), the enumerating attacker (the issue's): at each site, every
    assignment of arms to its subjects (and of types to the kits that left its stock
    unseen) is replayed through the review rule (by default the documented one,
    app.domain.resupply, fed with what the site counts itself); the assignments whose ship /
    no-ship decisions match every review the site could read are kept, weighted by the
    allocation ratio. A pair of visits between two reviews scores "of different types" by
    the share of the kept weight in which they differ; stratified AUC as
    `review_ship_auc`. A rule blind to the arms keeps every assignment or none. `certain`:
    pairs whose posterior is 0 or 1 (`certain_right`: right). `matched`: sites where the
    true assignment matches every readable review (the replay is the rule as it runs);
    `mismatches`: a few reviews where it does not (site, date, replayed, seen)."""

    sites: int
    enumerated: int  # sites replayed
    too_large: int  # sites with more assignments than the attacker's budget
    contradicted: int  # sites where no assignment matches every review (model mismatch)
    matched: int  # sites where the true assignment matches every readable review
    readable: int  # reviews the sites could read, over all sites
    assignments: int  # replayed, over all sites
    kept: int  # matching every review
    pairs: int
    auc: float | None
    certain: int
    certain_right: int
    shifted: int  # pairs whose posterior moved more than 0.05 from the table's prior
    mismatches: tuple[str, ...] = ()


def _refusal_dates(obs: Observations) -> dict[tuple[str, str], list[tuple[date, str]]]:
    """The refusals for supply each site saw: date and visit code. A refusal names the simulated
    day, not a date: one clock runs every study, so day 0's date is the latest that the
    events seen before any refusal allow (the date of the last dated event before it, less
    its day)."""
    dated = sorted(
        [(d.seq, d.at.date()) for d in obs.dispensations]
        + [(s.seq, s.received_at.date()) for s in obs.shipments if s.received_at is not None]
    )
    seqs = [seq for seq, _ in dated]
    refusals = [r for r in obs.refusals if r.code == "insufficient_supply"]
    base: date | None = None
    for refusal in refusals:
        i = bisect_left(seqs, refusal.seq) - 1
        if i >= 0:
            bound = dated[i][1] - timedelta(days=refusal.day)
            base = bound if base is None else max(base, bound)
    if base is None:  # nothing dated before any refusal: the first dated event after one
        bounds = [
            dated[i][1] - timedelta(days=r.day)
            for r in refusals
            if (i := bisect_left(seqs, r.seq)) < len(dated)
        ]
        base = min(bounds, default=None)
    found: dict[tuple[str, str], list[tuple[date, str]]] = defaultdict(list)
    if base is not None:
        for refusal in refusals:
            on = base + timedelta(days=refusal.day)
            found[(refusal.study, refusal.site)].append((on, refusal.visit))
    return found


def _by_subject(dispensations: Sequence[SeenDispensation]) -> dict[str, list[SeenDispensation]]:
    by_subject: dict[str, list[SeenDispensation]] = defaultdict(list)
    for d in sorted(dispensations, key=lambda d: d.seq):
        by_subject[d.subject].append(d)
    return by_subject


def _site_counts(
    study: Study,
    shipments: Sequence[SeenShipment],
    dispensations: Sequence[SeenDispensation],
    refusals: Sequence[tuple[date, str]],
    reviews: Sequence[date],
    ended: Mapping[str, date] | None = None,
    recorded: Sequence[SeenRecord] = (),
) -> list[tuple[SiteCounts, Fraction]]:
    """At each review (run at the day's start, before that day's receipts and visits), the
    rule's inputs as the site counts them: kits of each type ever shipped to it (the
    shipments created before, received or in transit, all whole sets); its stock (kits in
    transit, and kits received neither damaged, dispensed nor inside the do-not-dispense
    window); the coming demand of its subjects (randomization date, visits dispensed and
    last quantity, from the dispensations; a visit recorded missed or held is settled like a
    dispensed one; a subject ended before the review's date is no longer demand); and the
    share: 1 after a refusal it saw of a visit other than the first (app.services.resupply:
    the first visit's refusals, often for an initial shipment not yet received, do not
    count)."""
    n_types = max(1, len(study.supply.levels))
    dnd = timedelta(days=study.supply.do_not_dispense_days)
    handed = {k.number: d.at.date() for d in dispensations for k in d.kits}
    subjects = _by_subject(dispensations)
    largest = max((b.quantity for b in study.dispensing.weight_bands), default=1)
    share = top_share(study)
    first = min(study.visits, key=lambda v: v.day).code if study.visits else ""
    refused_on = [on for on, visit in refusals if visit != first]
    found = []
    for day in reviews:
        made = [s for s in shipments if s.created_at.date() < day]
        shipped = sum(len(s.kits) for s in made) // n_types
        stock = 0
        for shipment in made:
            if shipment.received_at is None or shipment.received_at.date() >= day:
                stock += len(shipment.kits)  # in transit
                continue
            stock += sum(
                1
                for k in shipment.kits
                if k.number not in shipment.damaged
                and not (k.number in handed and handed[k.number] < day)
                and k.expiry > day + dnd
            )
        present = []
        for subject, visits in subjects.items():
            if ended is not None and subject in ended and ended[subject] < day:
                continue
            before = [d for d in visits if d.at.date() < day]
            if before:
                settled = {d.visit for d in before} | {
                    r.visit for r in recorded if r.subject == subject and r.at.date() < day
                }
                present.append(
                    OnTreatment(
                        before[0].at.date(),
                        frozenset(settled),
                        len(before[-1].kits) or largest,
                    )
                )
        counts = SiteCounts(shipped, stock, coming_demand(study, present, day))
        found.append((counts, Fraction(1) if any(r < day for r in refused_on) else share))
    return found


def _arm_latents(
    study: Study, dispensations: Sequence[SeenDispensation], reviews: Sequence[date]
) -> tuple[list[_Latent], dict[str, int]]:
    """Each subject's arm as a latent (with the subject's index): under an arm, the kits of
    each type its visits took before each review."""
    types = sorted(study.supply.levels)
    table = study.dispensing.kit_type_by_arm_visit
    arms = tuple(a for a in study.arm_codes() if study.allocation_ratio.get(a, 0) > 0)
    weights = tuple(study.allocation_ratio[a] for a in arms)
    n_types, n_reviews = len(types), len(reviews)
    latents: list[_Latent] = []
    index: dict[str, int] = {}
    for subject, visits in _by_subject(dispensations).items():
        on = visits[0].at.date()
        first = next((j for j, day in enumerate(reviews) if on < day), None)
        if first is None:
            continue
        takes = []
        for arm in arms:
            take = [0] * (n_reviews * n_types)
            for j in range(first, n_reviews):
                for d in visits:
                    kit_type = table.get((arm, d.visit))
                    if d.at.date() < reviews[j] and kit_type in types:
                        take[j * n_types + types.index(kit_type)] += len(d.kits)
            takes.append(tuple(take))
        index[subject] = len(latents)
        latents.append(_Latent(arms, weights, first, tuple(takes), ("arm", subject)))
    return latents, index


def _kits_of_unknown_type(
    study: Study,
    shipments: Sequence[SeenShipment],
    dispensations: Sequence[SeenDispensation],
    reviews: Sequence[date],
    types: Sequence[str],
) -> list[_Latent]:
    """Kits received that left the stock without the site learning their type: damaged at
    receipt, or on the shelf undispensed inside the do-not-dispense window."""
    handed: dict[str, date] = {k.number: d.at.date() for d in dispensations for k in d.kits}
    dnd = timedelta(days=study.supply.do_not_dispense_days)
    n_types = len(types)
    found = []
    for shipment in shipments:
        if shipment.received_at is None:
            continue
        received = shipment.received_at.date()
        for kit in shipment.kits:
            if kit.number in shipment.damaged:
                first = next((j for j, day in enumerate(reviews) if received < day), None)
            else:
                first = next(
                    (
                        j
                        for j, day in enumerate(reviews)
                        if received < day
                        and kit.expiry <= day + dnd
                        and not (kit.number in handed and handed[kit.number] < day)
                    ),
                    None,
                )
            if first is None:
                continue
            takes = []
            for t in range(n_types):
                take = [0] * (len(reviews) * n_types)
                for j in range(first, len(reviews)):
                    take[j * n_types + t] = 1
                takes.append(tuple(take))
            found.append(
                _Latent(tuple(types), (1,) * n_types, first, tuple(takes), ("kit", kit.number))
            )
    return found


class _Rule:
    """The rule at each review of one site, memoised on each type's stock."""

    def __init__(
        self,
        study: Study,
        rule: ReviewRule,
        figures: Sequence[tuple[SiteCounts, Fraction]],
        types: Sequence[str],
    ) -> None:
        self.study, self.rule, self.figures, self.types = study, rule, figures, types
        self.cache: dict[tuple[int, tuple[int, ...]], bool] = {}

    def ships(self, j: int, taken: Sequence[int]) -> bool:
        """Whether review j ships, `taken` the kits of each type gone under an assignment."""
        key = (j, tuple(taken))
        found = self.cache.get(key)
        if found is None:
            counts, share = self.figures[j]
            by_type = {t: counts.shipped - n for t, n in zip(self.types, taken, strict=True)}
            found = self.rule(self.study, ReviewView(counts, share, by_type)) > 0
            self.cache[key] = found
        return found


def _replay(
    latents: Sequence[_Latent],
    rule: _Rule,
    shipped: Sequence[bool | None],
    budget: int,
) -> tuple[list[tuple[int, ...]], int] | None:
    """Depth first over the latents (ordered by the first review they change), checking
    each review as soon as every latent it depends on is chosen. Returns the matching
    assignments (option indexes) and the count replayed; None over the budget."""
    n_reviews, n_types = len(shipped), len(rule.types)
    total = 1
    for latent in latents:
        total *= len(latent.options)
    if total > budget:
        return None
    order = sorted(range(len(latents)), key=lambda i: latents[i].first)
    ready = [latents[i].first for i in order[1:]] + [n_reviews]
    kept: list[tuple[int, ...]] = []
    sums = [0] * (n_reviews * n_types)
    choice = [0] * len(latents)

    def agrees(j: int) -> bool:
        if shipped[j] is None:
            return True
        return rule.ships(j, sums[j * n_types : (j + 1) * n_types]) == shipped[j]

    def visit(depth: int, checked: int) -> None:
        if depth == len(order):
            kept.append(tuple(choice))
            return
        index = order[depth]
        latent = latents[index]
        upto = ready[depth]
        for option, take in enumerate(latent.take):
            for k, n in enumerate(take):
                sums[k] += n
            if all(agrees(j) for j in range(checked, upto)):
                choice[index] = option
                visit(depth + 1, max(checked, upto))
            for k, n in enumerate(take):
                sums[k] -= n

    start = latents[order[0]].first if latents else n_reviews
    if all(agrees(j) for j in range(start)):
        visit(0, start)
    return kept, total


def _true_mismatches(
    latents: Sequence[_Latent],
    rule: _Rule,
    windows: Sequence[ReviewWindow],
    truth: Truth,
    study: str,
) -> list[str] | None:
    """The readable reviews where the true assignment's decision is not the one seen
    (None: the truth does not name every latent)."""
    n_types = len(rule.types)
    sums = [0] * (len(windows) * n_types)
    for latent in latents:
        kind, name = latent.truth
        true = truth.arm.get((study, name)) if kind == "arm" else truth.kit_type.get((study, name))
        if true not in latent.options:
            return None
        for k, n in enumerate(latent.take[latent.options.index(true)]):
            sums[k] += n
    return [
        f"{w.site} {w.review}: replayed {not w.shipped}, seen {w.shipped}"
        for j, w in enumerate(windows)
        if w.told and rule.ships(j, sums[j * n_types : (j + 1) * n_types]) != w.shipped
    ]


def review_enumeration(
    obs: Observations,
    studies: Mapping[str, Study],
    truth: Truth,
    windows: Sequence[ReviewWindow] | None = None,
    budget: int = 400_000,
    rule: ReviewRule = documented_rule,
) -> ReviewEnumeration:
    windows = review_windows(obs) if windows is None else windows
    by_site: dict[tuple[str, str], list[ReviewWindow]] = defaultdict(list)
    for window in windows:
        by_site[(window.study, window.site)].append(window)
    dispensations: dict[tuple[str, str], list[SeenDispensation]] = defaultdict(list)
    for d in obs.dispensations:
        dispensations[(d.study, d.site)].append(d)
    shipments: dict[tuple[str, str], list[SeenShipment]] = defaultdict(list)
    for s in obs.shipments:
        shipments[(s.study, s.site)].append(s)
    refused = _refusal_dates(obs)

    strata = _Strata()
    enumerated = too_large = contradicted = matched = replayed = kept_total = 0
    certain = certain_right = shifted = 0
    mismatches: list[str] = []
    for (slug, site), found in sorted(by_site.items()):
        study = studies[slug]
        reviews = [w.review for w in found]
        types = sorted(study.supply.levels)
        latents, index = _arm_latents(study, dispensations[(slug, site)], reviews)
        latents += _kits_of_unknown_type(
            study, shipments[(slug, site)], dispensations[(slug, site)], reviews, types
        )
        figures = _site_counts(
            study,
            shipments[(slug, site)],
            dispensations[(slug, site)],
            refused.get((slug, site), []),
            reviews,
            {e.subject: e.at.date() for e in obs.ends if (e.study, e.site) == (slug, site)},
            [r for r in obs.records if (r.study, r.site) == (slug, site)],
        )
        replayer = _Rule(study, rule, figures, types)
        wrong = _true_mismatches(latents, replayer, found, truth, slug)
        if wrong is not None:
            matched += not wrong
            mismatches += wrong
        result = _replay(latents, replayer, [w.shipped if w.told else None for w in found], budget)
        if result is None:
            too_large += 1
            continue
        kept, total = result
        enumerated += 1
        replayed += total
        kept_total += len(kept)
        if not kept:
            contradicted += 1
            continue
        weights = [1] * len(kept)
        for i, choice in enumerate(kept):
            w = 1
            for latent, option in zip(latents, choice, strict=True):
                w *= latent.weights[option]
            weights[i] = w
        joint: dict[tuple[int, int], Counter[tuple[int, int]]] = {}
        table = study.dispensing.kit_type_by_arm_visit
        arms = tuple(a for a in study.arm_codes() if study.allocation_ratio.get(a, 0) > 0)
        ratio = [study.allocation_ratio[a] for a in arms]
        for window in found:
            for a, b in _visit_pairs(window):
                i, k = index[a.subject], index[b.subject]
                if (i, k) not in joint:
                    joint[(i, k)] = Counter()
                    for choice, w in zip(kept, weights, strict=True):
                        joint[(i, k)][(choice[i], choice[k])] += w
                pairs = joint[(i, k)]
                alike = sum(
                    w
                    for (x, y), w in pairs.items()
                    if table.get((arms[x], a.visit)) == table.get((arms[y], b.visit))
                )
                posterior = alike / sum(pairs.values())
                prior = (
                    sum(
                        ratio[x] * ratio[y]
                        for x in range(len(arms))
                        for y in range(len(arms))
                        if table.get((arms[x], a.visit)) == table.get((arms[y], b.visit))
                    )
                    / sum(ratio) ** 2
                )
                same = _same(truth, a, b)
                strata.add(_stratum(a, b), 1.0 - posterior, same)
                shifted += abs(posterior - prior) > 0.05
                if posterior in (0.0, 1.0):
                    certain += 1
                    certain_right += (posterior == 1.0) == same
    return ReviewEnumeration(
        sites=len(by_site),
        enumerated=enumerated,
        too_large=too_large,
        contradicted=contradicted,
        matched=matched,
        readable=sum(w.told for w in windows),
        assignments=replayed,
        kept=kept_total,
        pairs=strata.pairs,
        auc=strata.auc(),
        certain=certain,
        certain_right=certain_right,
        shifted=shifted,
        mismatches=tuple(mismatches[:10]),
    )


def describe(items: Iterable[tuple[str, object]]) -> str:
    """One line per figure, for a test's printed report."""
    return "\n".join(f"  {name}: {value}" for name, value in items)
