"""Site resupply, decided from what the site can count itself, so that neither a shipment
nor its absence tells a kit type.

Every shipment carries whole sets: a set is one kit of every kit type of the study, all of
one lot (`dispensing.SetPool` picks them). So a shipment's make-up, lot by lot, is the same
whichever type a site used, and a depot that cannot make one whole set ships nothing (the
supply manager is told); a single-type shipment never leaves.

Initial shipment (`initial_sets`): max over types of the type's initial level, in sets.

Daily review (`resupply_sets`), once a day per site, never inside a dispensation. Whether it
ships, and how much, is a function of figures the site itself can count and of the design
only, never of a subject's arm or a type's own stock (a rule on each type's stock, even at a
daily review, let an attacker enumerating the arms consistent with the days shipments came
separate same-type from different-type kit pairs: AUC 0.60-0.64 on a 156-subject trial):
- shipped = kits of each type ever shipped to the site (every shipment is whole sets);
- stock = the site's dispensable kits of all types + its kits in transit;
- gone = shipped x types - stock: the kits that left the site's stock (dispensed, damaged,
  expired, quarantined, inside the do-not-dispense window);
- low = shipped - ceil(share x gone): what the type used most still holds if no type took
  more than `share` of what went, share being the largest share of the allocation ratio
  that one type takes at one visit (`top_share`: 2/3 for IRIS-7, where two arms of three
  get the active kit at the first visit), or 1 once the site has had a visit after the first
  refused for supply (then every kit gone is counted against each type; a first visit's
  refusal, often for an initial shipment not yet received, does not count);
- demand = the kits the site's subjects on treatment need at their visits not yet
  settled (dispensed, or recorded missed or held) whose windows open within HORIZON_DAYS,
  plus as many first visits as the site randomized over the last HORIZON_DAYS
  (`coming_demand`: whatever the arms);
- want = ceil(share x demand) + the largest trigger level (the safety stock);
- ship when low < want: max(base, want - low) whole sets, base = max over types of
  (resupply - trigger).
The price of a rule blind to the types: a site receives about `share` x types of what it
uses (4/3 for IRIS-7), the rest waiting on its shelf. Should a type still run out, the visit
is refused whatever the subject's arm (app.domain.dispensing), the supply manager is told
and, unless kits are already on their way, an emergency shipment of the base leaves at once
(app.services.resupply), and the site's share becomes 1 from then on: a refusal is seen by
the site anyway, so what follows from it tells nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

from app.domain.study import Study, SupplyLevels

HORIZON_DAYS = 4  # a day of shipping, the day until the next review, two days of margin


def initial_sets(levels: Mapping[str, SupplyLevels]) -> int:
    """The whole sets a site receives on activation."""
    return max((level.initial for level in levels.values()), default=0)


@dataclass(frozen=True, slots=True)
class OnTreatment:
    """A subject still being dosed at a site, as the site itself knows them (no arm)."""

    randomized_on: date
    dispensed: frozenset[str]  # visits settled: dispensed, or recorded missed or held
    quantity: int  # kits at the last dispensation


def coming_demand(
    study: Study,
    subjects: Iterable[OnTreatment],
    today: date,
    horizon_days: int = HORIZON_DAYS,
) -> int:
    """The kits the subjects' coming visits need whatever their arms, and the first visits
    of the subjects expected (see the module docstring). A visit whose window has closed
    undispensed is missed and not counted."""
    subjects = list(subjects)
    last = today + timedelta(days=horizon_days)
    visits = sorted(study.visits, key=lambda v: v.day)
    since = today - timedelta(days=horizon_days)
    demand = sum(s.quantity for s in subjects if s.randomized_on > since)
    for subject in subjects:
        for visit in visits:
            if visit.code in subject.dispensed:
                continue
            if subject.randomized_on + timedelta(days=visit.day + visit.window_after) < today:
                continue
            if subject.randomized_on + timedelta(days=visit.day - visit.window_before) > last:
                break
            demand += subject.quantity
    return demand


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


@dataclass(frozen=True, slots=True)
class SiteCounts:
    """What a site can count itself, and what the review decides from."""

    shipped: int  # kits of each type ever shipped to the site
    stock: int  # kits of every type, dispensable at the site or in transit to it
    demand: int  # `coming_demand`


def resupply_sets(levels: Mapping[str, SupplyLevels], site: SiteCounts, share: Fraction) -> int:
    """The whole sets to ship at the review (0: none); `share` is the study's `top_share`,
    or 1 at a site that had a visit refused for supply."""
    if min(site.shipped, site.stock, site.demand) < 0:
        raise ValueError("kit counts cannot be negative")
    if not 0 < share <= 1:
        raise ValueError("share must be in (0, 1]")
    gone = max(0, site.shipped * len(levels) - site.stock)
    low = site.shipped - math.ceil(share * gone)
    want = math.ceil(share * site.demand) + max(level.trigger for level in levels.values())
    if low >= want:
        return 0
    base = max(level.resupply - level.trigger for level in levels.values())
    return max(1, base, want - low)
