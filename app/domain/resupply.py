"""Site resupply, decided so that no shipment tells a kit type.

Every shipment carries whole sets: a set is one kit of every kit type of the study, all of
one lot (`dispensing.SetPool` picks them). So a shipment's composition, lot by lot, is the
same whichever type a site used, and a depot that cannot make one whole set ships nothing
(the supply manager is told); a single-type shipment never leaves.

Initial shipment (`initial_sets`): max over types of the type's initial level, in sets.

Daily review (`resupply_sets`), once a day per site at the study's review, never inside a
dispensation, so a shipment's time says nothing of which visit took which type:
- stock(t) = the site's dispensable kits of type t + its kits of type t in transit;
- forecast(t) = the kits of type t that the site's subjects on treatment need at their
  visits not yet dispensed whose windows open within HORIZON_DAYS of the review (the
  service knows each subject's arm; each subject's quantity is that of their last weight
  band), plus the first visits of the subjects expected next: as many over the coming
  HORIZON_DAYS as were randomized at the site over the last HORIZON_DAYS, with the same
  kits, shared among the types by the allocation ratio (the share of the ratio whose arms
  get type t at the first visit, rounded up): a figure of the design and of the site's
  randomization count, the same whatever the arms of its subjects; see `forecast`;
- ship when some type t has stock(t) - forecast(t) < trigger(t): the trigger level is the
  safety stock kept beyond the forecast demand, and it covers the first visit of the next
  subject whatever the arm;
- ship max(base, want - held) whole sets, where base = max over types of (resupply -
  trigger); want = ceil(blind x top share) + the largest trigger, blind being the kits those
  coming visits and arrivals need whatever the arms (the sum of their quantities) and top
  share the largest share of the allocation ratio that one type takes at one visit
  (`top_share`: 2/3 for IRIS-7, where two arms of three get the active kit at the first
  visit); held = the site's stock of all types together divided by the number of types.
  Every term is a figure the site could compute itself (its subjects' schedule and weights,
  the kits it holds and awaits, the design), so the size of a shipment says nothing about
  which type ran low, nor how unevenly the types were used; only whether a shipment is sent
  at the daily review depends on the types' stock. A type used more than its share is
  topped up again at the next review, the trigger level covering the day between.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction

from app.domain.study import Study, SupplyLevels

HORIZON_DAYS = 4  # a day of shipping, the day until the next review, two days of margin


def initial_sets(levels: Mapping[str, SupplyLevels]) -> int:
    """The whole sets a site receives on activation."""
    return max((level.initial for level in levels.values()), default=0)


@dataclass(frozen=True, slots=True)
class OnTreatment:
    """A subject still being dosed at a site, as the review sees them."""

    arm: str
    randomized_on: date
    dispensed: frozenset[str]
    quantity: int


@dataclass(frozen=True, slots=True)
class Forecast:
    by_type: dict[str, int] = field(default_factory=dict)
    blind: int = 0  # the same visits' kits counted whatever the arms


def forecast(
    study: Study,
    subjects: Iterable[OnTreatment],
    today: date,
    horizon_days: int = HORIZON_DAYS,
) -> Forecast:
    """The kits the subjects' coming visits need, and the first visits of the subjects
    expected (see the module docstring). A visit whose window has closed undispensed is
    missed and not counted."""
    subjects = list(subjects)
    last = today + timedelta(days=horizon_days)
    table = study.dispensing.kit_type_by_arm_visit
    visits = sorted(study.visits, key=lambda v: v.day)
    by_type: dict[str, int] = {}
    since = today - timedelta(days=horizon_days)
    blind = sum(s.quantity for s in subjects if s.randomized_on > since)
    if blind and visits:
        total = sum(study.allocation_ratio.values())
        share: dict[str, int] = {}
        for arm, weight in study.allocation_ratio.items():
            kit_type = table.get((arm, visits[0].code))
            if kit_type is not None:
                share[kit_type] = share.get(kit_type, 0) + weight
        for kit_type, weight in share.items():
            by_type[kit_type] = -(-blind * weight // total)
    for subject in subjects:
        for visit in visits:
            if visit.code in subject.dispensed:
                continue
            if subject.randomized_on + timedelta(days=visit.day + visit.window_after) < today:
                continue
            if subject.randomized_on + timedelta(days=visit.day - visit.window_before) > last:
                break
            kit_type = table.get((subject.arm, visit.code))
            if kit_type is not None:
                by_type[kit_type] = by_type.get(kit_type, 0) + subject.quantity
                blind += subject.quantity
    return Forecast(by_type, blind)


def top_share(study: Study) -> Fraction:
    """The largest share of the allocation ratio whose arms get one kit type at one visit."""
    table = study.dispensing.kit_type_by_arm_visit
    total = sum(study.allocation_ratio.values())
    best = Fraction(0)
    for visit in study.visits:
        share: dict[str, int] = {}
        for arm, weight in study.allocation_ratio.items():
            kit_type = table.get((arm, visit.code))
            if kit_type is not None:
                share[kit_type] = share.get(kit_type, 0) + weight
        best = max([best, *(Fraction(w, total) for w in share.values())])
    return best or Fraction(1)


def resupply_sets(
    levels: Mapping[str, SupplyLevels],
    stock_by_type: Mapping[str, int],
    demand: Forecast,
    share: Fraction = Fraction(1),
) -> int:
    """The whole sets to ship at the review (0: none); `share` is the study's `top_share`."""
    if any(n < 0 for n in (*stock_by_type.values(), *demand.by_type.values(), demand.blind)):
        raise ValueError("kit counts cannot be negative")
    short = any(
        stock_by_type.get(kit_type, 0) - demand.by_type.get(kit_type, 0) < level.trigger
        for kit_type, level in levels.items()
    )
    if not short:
        return 0
    base = max((level.resupply - level.trigger for level in levels.values()), default=1)
    want = math.ceil(demand.blind * share) + max(level.trigger for level in levels.values())
    held = sum(stock_by_type.get(kit_type, 0) for kit_type in levels) // len(levels)
    return max(1, base, want - held)
