"""Dispensing: which kits a subject gets at a visit, and whether the visit may happen now.

Kit choice (`choose_kits`): among the site's kits of the required type, only those whose
expiry date is strictly after on_date + do_not_dispense_days are eligible (a kit that expires
within the window is never handed out). Eligible kits are taken first-expiry-first-out; among
kits of equal expiry the choice is random: the group is sorted by kit id, then shuffled with
Fisher-Yates driven by the injected `RandomSource`, and the first ones needed are taken.

Visits (`visit_check`): visits are done in study order, each one only once, with no skipping:
a visit requires every earlier visit dispensed (the first one is dispensed at randomization).
A missed visit therefore blocks the later ones until it is dispensed or the schedule is
changed; that strictness is deliberate, so a subject never receives a later kit type out of
sequence. A visit is open from randomized_on + day - window_before to
randomized_on + day + window_after, both ends included.

Randomization gate (`first_visit_servable`): a subject is randomized only when the site could
serve the first visit whatever the arm, so a refusal never depends on the subject's own arm.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import groupby

from app.domain.errors import Conflict, DomainError
from app.domain.kits import RandomSource, shuffled
from app.domain.study import Dispensing, Study, Visit


class InsufficientSupply(Conflict):
    """The site has too few dispensable kits for this visit."""

    code = "insufficient_supply"


class VisitNotAllowed(Conflict):
    """The visit is unknown, out of order, or outside its window."""

    code = "visit_not_allowed"


class VisitAlreadyDispensed(Conflict):
    """Kits were already dispensed to the subject at this visit."""

    code = "visit_already_dispensed"


class WeightOutOfRange(DomainError):
    """The subject's weight falls in no weight band of the study."""

    code = "weight_out_of_range"


@dataclass(frozen=True, slots=True)
class KitCandidate:
    kit_id: int
    kit_type: str
    expiry_date: date
    kit_number: str = ""  # as read from the shelf, for the pharmacist's answer
    lot: str = ""


def dispensable(
    candidates: Iterable[KitCandidate], on_date: date, do_not_dispense_days: int
) -> list[KitCandidate]:
    """The candidates still in date past the do-not-dispense window."""
    last_excluded = on_date + timedelta(days=do_not_dispense_days)
    return [c for c in candidates if c.expiry_date > last_excluded]


def dispensable_counts(
    candidates: Iterable[KitCandidate], on_date: date, do_not_dispense_days: int
) -> dict[str, int]:
    """Dispensable kit counts by type, as `first_visit_servable` expects them."""
    counts: dict[str, int] = {}
    for candidate in dispensable(candidates, on_date, do_not_dispense_days):
        counts[candidate.kit_type] = counts.get(candidate.kit_type, 0) + 1
    return counts


def choose_kits(
    candidates: Iterable[KitCandidate],
    kit_type: str,
    quantity: int,
    on_date: date,
    do_not_dispense_days: int,
    rng: RandomSource,
) -> list[int]:
    """The ids of `quantity` kits to dispense, first-expiry-first-out, random among equals."""
    if quantity < 1:
        raise ValueError("quantity must be positive")
    eligible = sorted(
        (
            c
            for c in dispensable(candidates, on_date, do_not_dispense_days)
            if c.kit_type == kit_type
        ),
        key=lambda c: (c.expiry_date, c.kit_id),
    )
    if len(eligible) < quantity:
        raise InsufficientSupply("not enough dispensable kits at the site for this visit")
    chosen: list[int] = []
    for _expiry, group in groupby(eligible, key=lambda c: c.expiry_date):
        needed = quantity - len(chosen)
        if needed == 0:
            break
        chosen.extend(c.kit_id for c in shuffled(list(group), rng)[:needed])
    return chosen


class FefoPool:
    """The kits of one place, drawn from many times: first-expiry-first-out, uniformly at
    random among kits of equal expiry, as `choose_kits` draws, but each draw costs only the
    kits it takes. For the initial shipments of a new kit list, where `choose_kits` over a
    depot's shrinking list would sort the whole depot again for every site (200 sites of a
    100,000-kit list: 12 s)."""

    def __init__(
        self, candidates: Iterable[KitCandidate], on_date: date, do_not_dispense_days: int
    ) -> None:
        eligible = sorted(
            dispensable(candidates, on_date, do_not_dispense_days),
            key=lambda c: (c.kit_type, c.expiry_date, c.kit_id),
        )
        self._groups: dict[str, deque[list[int]]] = {}
        self._counts: dict[str, int] = {}
        for (kit_type, _expiry), group in groupby(
            eligible, key=lambda c: (c.kit_type, c.expiry_date)
        ):
            ids = [c.kit_id for c in group]
            self._groups.setdefault(kit_type, deque()).append(ids)
            self._counts[kit_type] = self._counts.get(kit_type, 0) + len(ids)

    def available(self, kit_type: str) -> int:
        return self._counts.get(kit_type, 0)

    def take(self, kit_type: str, quantity: int, rng: RandomSource) -> list[int]:
        """`quantity` kits of the type, gone from the pool."""
        if quantity < 1:
            raise ValueError("quantity must be positive")
        if quantity > self.available(kit_type):
            raise InsufficientSupply("not enough dispensable kits for this shipment")
        groups = self._groups[kit_type]
        chosen: list[int] = []
        while len(chosen) < quantity:
            group = groups[0]  # the earliest expiry left
            for _ in range(min(quantity - len(chosen), len(group))):
                j = rng.randbelow(len(group))
                group[j], group[-1] = group[-1], group[j]
                chosen.append(group.pop())
            if not group:
                groups.popleft()
        self._counts[kit_type] -= quantity
        return chosen


def visit_check(
    visits: Sequence[Visit],
    randomized_on: date,
    dispensed: Collection[str],
    visit_code: str,
    on_date: date,
) -> None:
    """Refuse dispensing at `visit_code` on `on_date` unless the visit is due and not done."""
    ordered = sorted(visits, key=lambda v: v.day)
    index = next((i for i, v in enumerate(ordered) if v.code == visit_code), None)
    if index is None:
        raise VisitNotAllowed(f"visit {visit_code!r} is not a visit of the study")
    if visit_code in dispensed:
        raise VisitAlreadyDispensed(f"visit {visit_code!r} was already dispensed")
    missing = [v.code for v in ordered[:index] if v.code not in dispensed]
    if missing:
        raise VisitNotAllowed(
            f"visit {visit_code!r} needs the earlier visit {missing[0]!r} dispensed first"
        )
    visit = ordered[index]
    opens = randomized_on + timedelta(days=visit.day - visit.window_before)
    closes = randomized_on + timedelta(days=visit.day + visit.window_after)
    if not opens <= on_date <= closes:
        raise VisitNotAllowed(
            f"visit {visit_code!r} is open from {opens.isoformat()} to {closes.isoformat()}, "
            f"not on {on_date.isoformat()}"
        )


def quantity_for_weight(dispensing: Dispensing, weight_kg: Decimal) -> int:
    """Kits per visit for this weight: the band with min_kg <= weight < max_kg."""
    quantity = dispensing.quantity_for(weight_kg) if weight_kg.is_finite() else None
    if quantity is None:
        raise WeightOutOfRange(f"weight {weight_kg} kg is outside every weight band")
    return quantity


def first_visit_servable(study: Study, available_by_type: Mapping[str, int], quantity: int) -> bool:
    """Whether the site could serve the first visit to a subject of ANY arm.

    True only when, for every arm, the kit type of (arm, first visit) has at least `quantity`
    dispensable kits. A missing cell of the dispensing table counts as unservable.
    """
    if not study.visits:
        return False
    first = min(study.visits, key=lambda v: v.day)
    table = study.dispensing.kit_type_by_arm_visit
    for arm in study.arm_codes():
        kit_type = table.get((arm, first.code))
        if kit_type is None or available_by_type.get(kit_type, 0) < quantity:
            return False
    return True
