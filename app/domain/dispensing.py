"""Dispensing: which kits a subject gets at a visit, and whether the visit may happen now.

Eligible kits: only kits whose expiry date is strictly after on_date + do_not_dispense_days
(a kit that expires within the window is never handed out).

Kit choice (`choose_kits`), so that nothing a site sees of a kit (number, lot, expiry, the
shipment it came in, its place on the shelf) tells its type: kits are taken one at a time;
for each, a reference kit is drawn uniformly at random among ALL the site's eligible kits,
of every type, not yet taken; the kit handed out is drawn uniformly at random among the
eligible kits of the required type that share the reference kit's lot, or, when the type
has none of that lot, among all eligible kits of the required type. So the lot of a kit
handed out follows the lot mix of the whole shelf, the same for every type, whenever every
type holds kits of the shelf's lots (which whole-set shipments keep true); it never follows
an order (first-expiry-first-out would hand out a later lot of one type while earlier lots
of the other stay on the shelf, telling the pharmacist their type). Every draw is
Fisher-Yates style, driven by the injected `RandomSource`, over candidates sorted by kit id.

Shipments (`SetPool`): a depot ships whole sets, a set being one kit of every kit type of
the study, all of one lot; sets are taken from the earliest-expiring lot that still holds
an eligible kit of every type, the kit of each type at random within the lot. So every
shipment carries equal counts of every type lot by lot, and a depot's types run through the
lots in step: neither a shipment nor a lot code tells a type. A lot missing a type gives no
set (its odd kits wait for a central recall).

Visits (`visit_check`): dates are the site's local dates (app.domain.schedule.local_date):
day 0 is the site-local date of randomization. A visit is open from day0 + day - window_before
to day0 + day + window_after, both ends included (`visit_window`). The first visit (earliest
day) is dispensed at randomization, or in its own window when the randomization came without
a weight. Each visit is dispensed at most once, never after it was recorded missed (the
subject did not come) or held (the dose was withheld), and only inside its own window. Visits
keep study order: a visit is dispensable on a date only when every earlier visit is settled
on that date, settled meaning dispensed, or recorded missed or held, or with its window
closed (its last day before that date). So a missed dose never blocks the later ones for
good (once its window has closed, or once it is recorded, the next visit goes ahead in its
own window), while a subject is never given a later visit's kit while an earlier visit can
still be given. The rule looks at the schedule and the records only, never at the arm.

Refusals (`servable_for_every_arm`): a visit, the first (the randomization gate) or any
later one, is served only when the site could serve it to a subject of ANY arm, so whether
a visit is refused for supply never depends on the subject's own arm (a refusal tells the
site that some type is short, the same whoever is in front of the pharmacist).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from app.domain.errors import Conflict, DomainError
from app.domain.kits import RandomSource
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


class VisitAlreadyRecorded(Conflict):
    """The visit was recorded missed or held already; it is never dispensed after that."""

    code = "visit_already_recorded"


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
    """The ids of `quantity` kits of `kit_type` to dispense, lot-matched to the whole shelf
    (see the module docstring). `candidates` are all the site's kits, of every type."""
    if quantity < 1:
        raise ValueError("quantity must be positive")
    shelf = sorted(dispensable(candidates, on_date, do_not_dispense_days), key=lambda c: c.kit_id)
    wanted = [c for c in shelf if c.kit_type == kit_type]
    if len(wanted) < quantity:
        raise InsufficientSupply("not enough dispensable kits at the site for this visit")
    chosen: list[int] = []
    for _ in range(quantity):
        reference = shelf[rng.randbelow(len(shelf))]
        same_lot = [c for c in wanted if c.lot == reference.lot]
        pool = same_lot or wanted
        kit = pool[rng.randbelow(len(pool))]
        chosen.append(kit.kit_id)
        shelf.remove(kit)
        wanted.remove(kit)
    return chosen


class SetPool:
    """The eligible kits of one depot, shipped as whole sets (see the module docstring):
    `take(sets)` draws each set from the earliest-expiring lot holding every type."""

    def __init__(
        self,
        candidates: Iterable[KitCandidate],
        kit_types: Collection[str],
        on_date: date,
        do_not_dispense_days: int,
    ) -> None:
        self._types = sorted(kit_types)
        by_lot: dict[tuple[date, str], dict[str, list[int]]] = {}
        for c in sorted(
            dispensable(candidates, on_date, do_not_dispense_days), key=lambda c: c.kit_id
        ):
            if c.kit_type in self._types:
                by_lot.setdefault((c.expiry_date, c.lot), {}).setdefault(c.kit_type, []).append(
                    c.kit_id
                )
        self._lots: deque[dict[str, list[int]]] = deque(
            by_lot[key] for key in sorted(by_lot) if len(by_lot[key]) == len(self._types)
        )

    def available(self) -> int:
        """How many whole sets the pool can still give."""
        return sum(min(len(ids) for ids in lot.values()) for lot in self._lots)

    def take(self, sets: int, rng: RandomSource) -> list[int]:
        """Up to `sets` whole sets (fewer when the depot runs out), gone from the pool."""
        if sets < 0:
            raise ValueError("sets cannot be negative")
        chosen: list[int] = []
        for _ in range(sets):
            while self._lots and any(not ids for ids in self._lots[0].values()):
                self._lots.popleft()
            if not self._lots:
                break
            lot = self._lots[0]
            for kit_type in self._types:
                ids = lot[kit_type]
                j = rng.randbelow(len(ids))
                ids[j], ids[-1] = ids[-1], ids[j]
                chosen.append(ids.pop())
        return chosen


def visit_window(visit: Visit, day0: date) -> tuple[date, date]:
    """The first and last (site-local) dates of the visit's window, both included."""
    return (
        day0 + timedelta(days=visit.day - visit.window_before),
        day0 + timedelta(days=visit.day + visit.window_after),
    )


def visit_check(
    visits: Sequence[Visit],
    randomized_on: date,
    dispensed: Collection[str],
    visit_code: str,
    on_date: date,
    recorded: Collection[str] = (),
) -> None:
    """Refuse dispensing at `visit_code` on `on_date` unless the visit is due and not done
    (see the module docstring). `randomized_on` and `on_date` are site-local dates;
    `recorded`: the visits recorded missed or held."""
    ordered = sorted(visits, key=lambda v: v.day)
    index = next((i for i, v in enumerate(ordered) if v.code == visit_code), None)
    if index is None:
        raise VisitNotAllowed(f"visit {visit_code!r} is not a visit of the study")
    if visit_code in dispensed:
        raise VisitAlreadyDispensed(f"visit {visit_code!r} was already dispensed")
    if visit_code in recorded:
        raise VisitAlreadyRecorded(f"visit {visit_code!r} was recorded missed or held")
    pending = [
        v.code
        for v in ordered[:index]
        if v.code not in dispensed
        and v.code not in recorded
        and visit_window(v, randomized_on)[1] >= on_date
    ]
    if pending:
        raise VisitNotAllowed(
            f"visit {visit_code!r} needs the earlier visit {pending[0]!r} dispensed, or "
            "recorded missed or held, first"
        )
    opens, closes = visit_window(ordered[index], randomized_on)
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


def first_visit(study: Study) -> Visit | None:
    """The visit dispensed at randomization (the earliest day)."""
    return min(study.visits, key=lambda v: v.day) if study.visits else None


def servable_for_every_arm(
    study: Study, visit_code: str, available_by_type: Mapping[str, int], quantity: int
) -> bool:
    """Whether the site could serve `visit_code` to a subject of ANY arm.

    True only when, for every arm, the kit type of (arm, visit) has at least `quantity`
    dispensable kits. A missing cell of the dispensing table counts as unservable.
    """
    table = study.dispensing.kit_type_by_arm_visit
    for arm in study.arm_codes():
        kit_type = table.get((arm, visit_code))
        if kit_type is None or available_by_type.get(kit_type, 0) < quantity:
            return False
    return True
