"""Drug supply use cases: kit lists, receipt, dispensing, excursions (shipping and resupply:
app.services.resupply).

Kit list size (`kit_plan`): for each depot, as many kits of every type (shipments are whole
sets, app.services.resupply): the sum over the depot's sites (active or not: an inactive site
may be activated later) of the initial sets plus `supply.resupply_rounds` times the largest
resupply level; each type's study-wide total is then rounded up to whole lots of
`supply.kits_per_lot` (the kits of one type in one lot), the extra kits going to the depots
in turn. Lots come from `plan_lots` (each holds kits of every type; first
expiry one shelf life after the day of generation) and each type's kits are dealt to its
depots in expiry order, so every depot holds kits of every lot.

Locks: a use case that changes a site's kits (dispensing, replacement, receipt, excursion,
resupply) first locks the site's row, then moves kits with `move_kits` (locked in ascending
id, each still in the status the choice saw, then one UPDATE). So a site's supply changes are
serialized, a kit is never taken twice (a conflicting choice is simply made again), and all
transactions take their locks in one order: subject, site, stratum, kits.

Blinding: kit types are opened only to choose kits; no result, audit event, log line or
error message of this module carries a kit type or an arm. Kit numbers are listed in
number order, which is random with respect to type. Visit windows and the do-not-dispense
window at a dispensation count in the site's local dates (app.domain.schedule); lots and the
expiry review use UTC dates.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.domain.access import Principal
from app.domain.audit import AuditEvent
from app.domain.dispensing import (
    InsufficientSupply,
    VisitNotAllowed,
    choose_kits,
    dispensable_counts,
    first_visit,
    quantity_for_weight,
    servable_for_every_arm,
    visit_check,
)
from app.domain.errors import Conflict, DomainError, NotFound, SiteNotFound, StudyNotFound
from app.domain.kits import (
    KitNumber,
    KitStatus,
    RandomSource,
    SecretsRandom,
    assign_kit_types,
    check_transition,
    generate_kit_numbers,
    plan_lots,
    release_status,
)
from app.domain.resupply import initial_sets
from app.domain.returns import HandedOut, expected_back
from app.domain.schedule import site_date
from app.domain.study import Site, Study
from app.domain.subjects import (
    Subject,
    SubjectNotFound,
    SubjectNotRandomized,
    SubjectStatus,
    check_on_treatment,
)
from app.services.blinding import ensure_not_locked
from app.services.ports import (
    ExcursionRecord,
    KitRecord,
    NewKit,
    ShipmentRecord,
    UnitOfWork,
)
from app.services.resupply import (
    MAX_ATTEMPTS,
    SupplyBusy,
    plan_initial_shipments,
    record_initial_shipments,
    refused_for_supply,
    ship_initial,
)

log = logging.getLogger("iwrs.supply")

REPLACEMENT_REASONS = ("damaged", "lost")
EXCURSION_DECISIONS = {"release": "released", "reject": "rejected"}


class KitNotFound(NotFound):
    """No such kit in the study (or not at the caller's sites)."""

    code = "kit_not_found"


class ShipmentNotFound(NotFound):
    """No such shipment in the study (or not to the caller's sites)."""

    code = "shipment_not_found"


class ExcursionNotFound(NotFound):
    """No such temperature excursion in the study."""

    code = "excursion_not_found"


class KitsAlreadyGenerated(Conflict):
    """The study has its kit list already; it is made once."""

    code = "kits_already_generated"


class ShipmentAlreadyReceived(Conflict):
    """The shipment's receipt was confirmed already."""

    code = "shipment_already_received"


class ExcursionAlreadyResolved(Conflict):
    """The excursion was released or rejected already."""

    code = "excursion_already_resolved"


class NoKitToQuarantine(Conflict):
    """None of the excursion's kits can be quarantined (dispensed, damaged...)."""

    code = "no_kit_to_quarantine"


class VisitNotDispensed(Conflict):
    """The subject received no kits at this visit, so none can be replaced."""

    code = "visit_not_dispensed"


class KitNotDispensedAtVisit(Conflict):
    """The kit is not one the subject holds from this visit."""

    code = "kit_not_dispensed_at_visit"


class KitNotInShipment(DomainError):
    """A kit number named in a receipt is not part of the shipment."""

    code = "kit_not_in_shipment"


class InvalidSupplyRequest(DomainError):
    """The request names a decision or reason the service does not know."""

    code = "invalid_supply_request"


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispensedKit:
    kit_number: str
    lot: str
    expiry_date: date


@dataclass(frozen=True, slots=True)
class Dispensation:
    subject_id: str
    visit: str
    kits: tuple[DispensedKit, ...]
    dispensed_at: datetime


@dataclass(frozen=True, slots=True)
class Replacement:
    subject_id: str
    visit: str
    replaced_kit_number: str
    reason: str
    kit: DispensedKit
    replaced_at: datetime


@dataclass(frozen=True, slots=True)
class KitGeneration:
    study: str
    kits: int
    lots: int
    kits_by_depot: Mapping[str, int]
    shipments: tuple[ShipmentRecord, ...]

    def __str__(self) -> str:
        """A one-line summary: totals only, never a kit type nor a kit number."""
        return (
            f"{self.kits} kits in {self.lots} lots, "
            f"initial shipments to {', '.join(s.site for s in self.shipments) or 'no site'}"
        )


@dataclass(frozen=True, slots=True)
class Inventory:
    site: str
    counts: Mapping[str, int]  # by kit status, every status a site kit can have


# --- helpers -------------------------------------------------------------------------------


def _study(uow: UnitOfWork, principal: Principal | None, slug: str, *, hold: bool = False) -> Study:
    """The study the caller may see; `hold` share-locks its row as it is read (for a change
    that ensure_not_locked guards)."""
    if principal is not None and not principal.sees_study(slug):
        raise StudyNotFound(f"no study {slug!r}")
    stored = uow.studies.get(slug, hold=hold)
    if stored is None:
        raise StudyNotFound(f"no study {slug!r}")
    return stored.study


def _site(study: Study, principal: Principal | None, code: str) -> Site:
    site = study.site(code)
    scope = None if principal is None else principal.sites_in(study.slug)
    if site is None or (scope is not None and code not in scope):
        raise SiteNotFound(f"no site {code!r} in study {study.slug!r}")
    return site


def _kit_numbers(texts: Sequence[str]) -> list[str]:
    """Canonical kit numbers, refusing any mistyped one (wrong length or check digit)."""
    return sorted({KitNumber.parse(text).value for text in texts})


def kit_plan(study: Study) -> dict[str, dict[str, int]]:
    """How many kits of each type to make for each depot (see the module docstring)."""
    levels = study.supply.levels
    per_site = initial_sets(levels) + study.supply.resupply_rounds * max(
        (level.resupply for level in levels.values()), default=0
    )
    need: dict[str, dict[str, int]] = {}
    for site in study.sites:
        depot = need.setdefault(site.depot, {})
        for kit_type in levels:
            depot[kit_type] = depot.get(kit_type, 0) + per_site
    per_lot = study.supply.kits_per_lot
    depots = sorted(need)
    for kit_type in sorted(levels):
        wanted = sum(need[d].get(kit_type, 0) for d in depots)
        extra = -(-wanted // per_lot) * per_lot - wanted
        for i in range(extra):
            depot = need[depots[i % len(depots)]]
            depot[kit_type] = depot.get(kit_type, 0) + 1
    return need


def _take_site_kits(
    uow: UnitOfWork,
    study: Study,
    subject: Subject,
    visit: str,
    kit_type: str,
    quantity: int,
    on_date: date,
    dispensation_id: int,
    rng: RandomSource,
) -> tuple[DispensedKit, ...]:
    """Choose and move the kits; the kits as the pharmacist is told them, by kit number
    (from the shelf as read: number, lot and expiry never change). Refused unless the site
    could serve the visit to a subject of any arm (app.domain.dispensing)."""
    slug, dnd = study.slug, study.supply.do_not_dispense_days
    for _attempt in range(MAX_ATTEMPTS):
        candidates = uow.supply.stock(slug, KitStatus.AT_SITE, site=subject.site)
        counts = dispensable_counts(candidates, on_date, dnd)
        if not servable_for_every_arm(study, visit, counts, quantity):
            raise InsufficientSupply(
                f"site {subject.site!r} cannot serve visit {visit!r} to a subject of every "
                "arm; the supply manager is told"
            )
        chosen = choose_kits(candidates, kit_type, quantity, on_date, dnd, rng)
        if uow.supply.move_kits(
            slug,
            chosen,
            KitStatus.AT_SITE,
            KitStatus.DISPENSED,
            subject_pk=subject.pk,
            dispensation_id=dispensation_id,
        ):
            by_id = {c.kit_id: c for c in candidates}
            return tuple(
                sorted(
                    (
                        DispensedKit(by_id[i].kit_number, by_id[i].lot, by_id[i].expiry_date)
                        for i in chosen
                    ),
                    key=lambda k: k.kit_number,
                )
            )
    raise SupplyBusy(f"kits at site {subject.site!r} kept being taken; retry")


# --- kit list ------------------------------------------------------------------------------


def generate_kits(
    uow: UnitOfWork, slug: str, now: datetime | None = None, rng: RandomSource | None = None
) -> KitGeneration:
    """Make the study's kit list at its depots, then ship every active site its initial
    kits: one audited transaction. A study's kits are generated once."""
    now = now or uow.clock.now()
    rng = rng or SecretsRandom()
    with uow:
        stored = uow.studies.get(slug, for_update=True)  # one generation at a time
        if stored is None:
            raise StudyNotFound(f"no study {slug!r}")
        study = stored.study
        if uow.supply.kit_count(slug):
            raise KitsAlreadyGenerated(f"study {slug!r} has its kits already")
        plan = kit_plan(study)
        totals = Counter[str]()
        for depot_counts in plan.values():
            totals.update(depot_counts)
        numbers = generate_kit_numbers(sum(totals.values()), rng=rng)
        by_type: dict[str, list[str]] = {}
        for number, kit_type in assign_kit_types(numbers, totals, rng):
            by_type.setdefault(kit_type, []).append(number)
        shelf_life = study.supply.lot_shelf_life_days
        lots = plan_lots(
            totals,
            study.supply.kits_per_lot,
            now.date() + timedelta(days=shelf_life),
            shelf_life,
        )
        kits: list[NewKit] = []
        taken = Counter[str]()
        for planned in sorted(lots, key=lambda p: (p.lot.expiry_date, p.lot.code)):
            start = taken[planned.kit_type]
            numbers_of_lot = by_type[planned.kit_type][start : start + planned.kit_count]
            taken[planned.kit_type] += planned.kit_count
            kits += [NewKit(n, planned.kit_type, planned.lot, "") for n in numbers_of_lot]
        kits, shorts = plan_initial_shipments(study, deal_to_depots(kits, plan), now, rng)
        uow.supply.add_kits(slug, kits, now)
        by_depot = dict(sorted(Counter(k.depot for k in kits).items()))
        uow.record(
            AuditEvent(
                action="kits.generated",
                entity_type="kit_list",
                entity_id=slug,
                study=slug,
                after={
                    "kits": len(kits),
                    "lots": len(lots),
                    "kits_by_depot": by_depot,
                    "kit_status": KitStatus.AT_DEPOT.value,
                },
            )
        )
        shipments = record_initial_shipments(uow, study, shorts, now)
        result = KitGeneration(slug, len(kits), len(lots), by_depot, tuple(shipments))
        uow.commit(result)
    return result


def deal_to_depots(kits: Sequence[NewKit], plan: Mapping[str, Mapping[str, int]]) -> list[NewKit]:
    """Each type's kits (in expiry order) dealt to its depots in turn, up to their quotas."""
    dealt: list[NewKit] = []
    depots = sorted(plan)
    for kit_type in sorted({k.kit_type for k in kits}):
        remaining = {d: plan[d].get(kit_type, 0) for d in depots}
        turn = 0
        for kit in (k for k in kits if k.kit_type == kit_type):
            while remaining[depots[turn % len(depots)]] == 0:
                turn += 1
            depot = depots[turn % len(depots)]
            remaining[depot] -= 1
            turn += 1
            dealt.append(NewKit(kit.kit_number, kit.kit_type, kit.lot, depot))
    return dealt


def send_initial_shipments(
    uow: UnitOfWork, slug: str, now: datetime | None = None
) -> list[ShipmentRecord]:
    """Ship the initial kits to active sites that have had none (a site activated later)."""
    now = now or uow.clock.now()
    with uow:
        study = _study(uow, None, slug)
        shipments = ship_initial(uow, study, now)
        uow.commit(shipments)
    return shipments


def expire_kits(uow: UnitOfWork, slug: str, now: datetime | None = None) -> dict[str, list[str]]:
    """Mark `expired` every kit at a depot or a site whose expiry date has passed (the next
    resupply review counts them gone). The expired kit numbers by place."""
    now = now or uow.clock.now()
    today = now.date()
    expired: dict[str, list[str]] = {}
    with uow:
        study = _study(uow, None, slug)
        places: list[tuple[str, KitStatus, str | None, str | None]] = [
            (depot.code, KitStatus.AT_DEPOT, None, depot.code) for depot in study.depots
        ] + [(site.code, KitStatus.AT_SITE, site.code, None) for site in study.sites]
        for place, status, site, depot in sorted(places, key=lambda p: p[2] is not None):
            if site is not None:
                uow.supply.lock_site(slug, site)
            ids = [
                c.kit_id
                for c in uow.supply.stock(slug, status, site=site, depot=depot)
                if c.expiry_date < today
            ]
            if not ids:
                continue
            if not uow.supply.move_kits(slug, ids, status, KitStatus.EXPIRED):
                raise SupplyBusy(f"kits at {place!r} changed meanwhile; retry")
            numbers = [k.kit_number for k in uow.supply.kits(slug, ids=ids)]
            expired[place] = numbers
            uow.record(
                AuditEvent(
                    action="kits.expired",
                    entity_type="site" if site else "depot",
                    entity_id=place,
                    study=slug,
                    before={"kit_status": status.value},
                    after={"kit_numbers": numbers, "kit_status": KitStatus.EXPIRED.value},
                )
            )
        uow.commit(expired)
    return expired


# --- dispensing ----------------------------------------------------------------------------


def first_visit_servable(
    uow: UnitOfWork, study: Study, site: str, weight_kg: Decimal | None
) -> bool:
    """Whether the site can serve the first visit whatever the arm (inside an open uow).

    The quantity is that of the weight's band, or of the largest band when the weight is not
    known. Locks the site, so the kits counted here are still there when the caller
    dispenses them in the same transaction. An out-of-band weight raises WeightOutOfRange.
    """
    if weight_kg is None:
        quantity = max((b.quantity for b in study.dispensing.weight_bands), default=1)
    else:
        quantity = quantity_for_weight(study.dispensing, weight_kg)
    uow.supply.lock_site(study.slug, site)
    counts = dispensable_counts(
        uow.supply.stock(study.slug, KitStatus.AT_SITE, site=site),
        site_date(study, site, uow.clock.now()),
        study.supply.do_not_dispense_days,
    )
    visit = first_visit(study)
    return visit is not None and servable_for_every_arm(study, visit.code, counts, quantity)


def dispense(
    uow: UnitOfWork,
    study: Study,
    subject: Subject,
    arm: str,
    visit: str,
    weight_kg: Decimal,
    on_date: date,
    *,
    rng: RandomSource | None = None,
    fresh: bool = False,
) -> Dispensation:
    """Pick and dispense the visit's kits inside an open uow (audited; no commit).

    The visit must be due on `on_date` (a site-local date; visit days count from the
    site-local date of randomization, or from `on_date` while the subject is being
    randomized) and not recorded missed or held (app.domain.dispensing), the kit type
    is the study's for arm x visit and the quantity that of the weight band; never a
    shipment (the daily review decides those). `fresh`: the subject was randomized in this
    transaction, so no visit of theirs can have been dispensed yet.
    """
    rng = rng or SecretsRandom()
    slug = study.slug
    ensure_not_locked(uow, slug)
    uow.supply.lock_site(slug, subject.site)
    done = set() if fresh else uow.supply.dispensed_visits(subject)
    recorded = set() if fresh else {r.visit for r in uow.visits.recorded(subject)}
    randomized_on = (
        site_date(study, subject.site, subject.randomized_at) if subject.randomized_at else on_date
    )
    visit_check(study.visits, randomized_on, done, visit, on_date, recorded)
    return hand_out(uow, study, subject, arm, visit, visit, weight_kg, on_date, rng)


def hand_out(
    uow: UnitOfWork,
    study: Study,
    subject: Subject,
    arm: str,
    code: str,
    served_as: str,
    weight_kg: Decimal,
    on_date: date,
    rng: RandomSource,
    *,
    reason: str | None = None,
) -> Dispensation:
    """Record the dispensation `code` (a visit, or an unscheduled U1...) with the kits of
    arm x `served_as` in the weight band's quantity, refused unless the site could serve
    `served_as` to a subject of any arm; audited (inside an open uow, the site locked)."""
    quantity = quantity_for_weight(study.dispensing, weight_kg)
    kit_type = study.dispensing.kit_type_by_arm_visit.get((arm, served_as))
    if kit_type is None:
        raise VisitNotAllowed(f"visit {served_as!r} has no kit in the dispensing table")
    now = uow.clock.now()
    dispensation_id = uow.supply.add_dispensation(
        subject, code, weight_kg, quantity, now, uow.actor.actor_id
    )
    kits = _take_site_kits(
        uow, study, subject, served_as, kit_type, quantity, on_date, dispensation_id, rng
    )
    after: dict[str, Any] = {"visit": code}
    if code != served_as:
        after |= {"unscheduled": True, "reference_visit": served_as}
    after |= {
        "site": subject.site,
        "weight_kg": str(weight_kg),
        "quantity": quantity,
        "kit_numbers": [k.kit_number for k in kits],
        "kit_status": KitStatus.DISPENSED.value,
    }
    uow.record(
        AuditEvent(
            action="dispensation.created",
            entity_type="dispensation",
            entity_id=f"{subject.subject_id}/{code}",
            study=study.slug,
            subject_id=subject.subject_id,
            before={"kit_status": KitStatus.AT_SITE.value},
            after=after,
            reason=reason,
        )
    )
    return Dispensation(subject.subject_id, code, kits, now)


def _randomized_subject(
    uow: UnitOfWork, principal: Principal, slug: str, subject_id: str
) -> tuple[Subject, str]:
    subject = uow.subjects.get(slug, subject_id, sites=principal.sites_in(slug), for_update=True)
    if subject is None:
        raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
    check_on_treatment(subject)
    arm = uow.lists.arm_of(subject) if subject.status is SubjectStatus.RANDOMIZED else None
    if arm is None:
        raise SubjectNotRandomized(f"subject {subject_id!r} is not randomized")
    return subject, arm


def record_dispensation(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    visit: str,
    weight_kg: Decimal,
    rng: RandomSource | None = None,
) -> Dispensation:
    """Dispense a randomized subject's kits for a visit (the API's use case). A refusal for
    supply tells the supply manager and ships at once (`refused_for_supply`)."""
    with uow:
        study = _study(uow, principal, slug, hold=True)
        subject, arm = _randomized_subject(uow, principal, slug, subject_id)
        try:
            today = site_date(study, subject.site, uow.clock.now())
            result = dispense(uow, study, subject, arm, visit, weight_kg, today, rng=rng)
        except InsufficientSupply:
            refused_for_supply(uow, study, subject.site, subject_id, visit)
            raise
        uow.commit(result)
    return result


def replace_kit(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    visit: str,
    kit_number: str,
    reason: str,
    rng: RandomSource | None = None,
) -> Replacement:
    """Give the subject a new kit of the same type for one dispensed at `visit` that was
    damaged or lost. The kit replaced goes to `returned` (the only way out of `dispensed`);
    the reason is in the audit event."""
    if reason not in REPLACEMENT_REASONS:
        raise InvalidSupplyRequest(f"reason must be one of {', '.join(REPLACEMENT_REASONS)}")
    number = KitNumber.parse(kit_number).value
    rng = rng or SecretsRandom()
    with uow:
        study = _study(uow, principal, slug, hold=True)
        ensure_not_locked(uow, slug)
        subject, _arm = _randomized_subject(uow, principal, slug, subject_id)
        uow.supply.lock_site(slug, subject.site)
        dispensation = next(
            (d for d in uow.supply.dispensations(subject) if d.visit == visit), None
        )
        if dispensation is None:
            raise VisitNotDispensed(f"subject {subject_id!r} has no kits from visit {visit!r}")
        old = next((k for k in dispensation.kits if k.kit_number == number), None)
        if old is None or old.status is not KitStatus.DISPENSED:
            raise KitNotDispensedAtVisit(
                f"kit {number} is not held by subject {subject_id!r} from visit {visit!r}"
            )
        check_transition(number, old.status, KitStatus.RETURNED)
        kit_type = uow.supply.types_of(slug, [old.id])[old.id]
        now = uow.clock.now()
        try:
            (new,) = _take_site_kits(
                uow, study, subject, visit, kit_type, 1, now.date(), dispensation.id, rng
            )
        except InsufficientSupply:
            refused_for_supply(uow, study, subject.site, subject_id, visit)
            raise
        if not uow.supply.move_kits(slug, [old.id], KitStatus.DISPENSED, KitStatus.RETURNED):
            raise KitNotDispensedAtVisit(f"kit {number} changed meanwhile")
        uow.record(
            AuditEvent(
                action="kit.replaced",
                entity_type="kit",
                entity_id=number,
                study=slug,
                subject_id=subject_id,
                reason=reason,
                before={"kit_number": number, "kit_status": KitStatus.DISPENSED.value},
                after={
                    "visit": visit,
                    "kit_status": KitStatus.RETURNED.value,
                    "replacement_kit_number": new.kit_number,
                    "replacement_kit_status": KitStatus.DISPENSED.value,
                },
            )
        )
        result = Replacement(subject_id, visit, number, reason, new, now)
        uow.commit(result)
    return result


# --- shipments -----------------------------------------------------------------------------


def receive_shipment(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    shipment_code: str,
    damaged: Sequence[str] = (),
) -> ShipmentRecord:
    """Confirm a shipment's arrival: its kits become usable (`at_site`), those named damaged
    go to `damaged`; a kit quarantined on the way stays quarantined. Received once."""
    damaged_numbers = _kit_numbers(damaged)
    with uow:
        _study(uow, principal, slug)
        sites = principal.sites_in(slug)
        found = uow.supply.shipment(slug, shipment_code, sites=sites)
        if found is None:
            raise ShipmentNotFound(f"no shipment {shipment_code!r} in study {slug!r}")
        uow.supply.lock_site(slug, found.site)
        shipment = uow.supply.shipment(slug, shipment_code, sites=sites, for_update=True)
        assert shipment is not None
        if shipment.status == "received":
            raise ShipmentAlreadyReceived(f"shipment {shipment_code!r} was received already")
        kits = uow.supply.kits(slug, shipment_id=shipment.id)
        unknown = sorted(set(damaged_numbers) - {k.kit_number for k in kits})
        if unknown:
            raise KitNotInShipment(f"kit {unknown[0]} is not in shipment {shipment_code!r}")
        arrived = [k for k in kits if k.kit_number not in damaged_numbers]
        broken = [k for k in kits if k.kit_number in damaged_numbers]
        for kit in broken:
            check_transition(kit.kit_number, kit.status, KitStatus.DAMAGED)
        usable = [k.id for k in arrived if k.status is KitStatus.IN_TRANSIT]
        moves = [(usable, KitStatus.IN_TRANSIT, KitStatus.AT_SITE)] + [
            ([k.id for k in broken if k.status is status], status, KitStatus.DAMAGED)
            for status in sorted({k.status for k in broken})
        ]
        for ids, expected, new in moves:
            if not uow.supply.move_kits(slug, ids, expected, new):
                raise Conflict(f"kits of shipment {shipment_code!r} changed meanwhile; retry")
        now = uow.clock.now()
        uow.supply.mark_received(shipment.id, now, uow.actor.actor_id)
        uow.record(
            AuditEvent(
                action="shipment.received",
                entity_type="shipment",
                entity_id=shipment_code,
                study=slug,
                before={"status": shipment.status, "kit_status": KitStatus.IN_TRANSIT.value},
                after={
                    "status": "received",
                    "site": shipment.site,
                    "kits_at_site": sorted(k.kit_number for k in arrived if k.id in usable),
                    "kits_damaged": [k.kit_number for k in broken],
                    "kits_held": sorted(k.kit_number for k in arrived if k.id not in usable),
                },
            )
        )
        result = uow.supply.shipment(slug, shipment_code)
        assert result is not None
        uow.commit(result)
    return result


def list_shipments(
    uow: UnitOfWork, principal: Principal, slug: str, site: str | None = None
) -> list[ShipmentRecord]:
    """The shipments the caller may see, of one site or of all its sites."""
    with uow:
        study = _study(uow, principal, slug)
        if site is not None:
            _site(study, principal, site)
        return uow.supply.shipments(slug, sites=principal.sites_in(slug), site=site)


def get_shipment(
    uow: UnitOfWork, principal: Principal, slug: str, shipment_code: str
) -> ShipmentRecord:
    with uow:
        _study(uow, principal, slug)
        found = uow.supply.shipment(slug, shipment_code, sites=principal.sites_in(slug))
    if found is None:
        raise ShipmentNotFound(f"no shipment {shipment_code!r} in study {slug!r}")
    return found


# --- lookups -------------------------------------------------------------------------------


def lookup_kit(uow: UnitOfWork, principal: Principal, slug: str, kit_number: str) -> KitRecord:
    """A kit's blinded record; a site role sees only kits at or bound for its sites."""
    with uow:
        _study(uow, principal, slug)
        number = KitNumber.parse(kit_number).value
        found = uow.supply.kits(slug, numbers=[number], sites=principal.sites_in(slug))
    if not found:
        raise KitNotFound(f"no kit {number} in study {slug!r}")
    return found[0]


def site_inventory(uow: UnitOfWork, principal: Principal, slug: str, site: str) -> Inventory:
    """A site's kits counted by status (never by type)."""
    with uow:
        study = _study(uow, principal, slug)
        _site(study, principal, site)
        counts = uow.supply.status_counts(slug, site)
    statuses = [s.value for s in KitStatus if s is not KitStatus.AT_DEPOT]
    return Inventory(site, {s: counts.get(s, 0) for s in statuses})


def kits_expected_back(
    uow: UnitOfWork, principal: Principal, slug: str, site: str
) -> list[HandedOut]:
    """The kits the site's discontinued subjects are expected to bring back (blinded:
    numbers, visits and subjects; see app.domain.returns)."""
    with uow:
        study = _study(uow, principal, slug)
        _site(study, principal, site)
        return expected_back(uow.supply.handed_out_to_discontinued(slug, site))


# --- temperature excursions ----------------------------------------------------------------


def report_excursion(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    description: str,
    *,
    site: str | None = None,
    kit_numbers: Sequence[str] | None = None,
    shipment_code: str | None = None,
) -> ExcursionRecord:
    """Quarantine the kits of a temperature excursion: the kits named at a site, or every
    kit of a shipment still in transit or at the site. Each kit remembers where it was."""
    if (kit_numbers is None) == (shipment_code is None):
        raise InvalidSupplyRequest("name either kit numbers (with a site) or a shipment")
    numbers = None if kit_numbers is None else _kit_numbers(kit_numbers)
    with uow:
        study = _study(uow, principal, slug)
        sites = principal.sites_in(slug)
        shipment = None
        if shipment_code is not None:
            shipment = uow.supply.shipment(slug, shipment_code, sites=sites)
            if shipment is None:
                raise ShipmentNotFound(f"no shipment {shipment_code!r} in study {slug!r}")
            if site is not None and site != shipment.site:
                raise ShipmentNotFound(f"no shipment {shipment_code!r} to site {site!r}")
            site = shipment.site
        if site is None:
            raise InvalidSupplyRequest("name the site of the kits")
        _site(study, principal, site)
        uow.supply.lock_site(slug, site)
        if shipment is not None:
            kits = [
                k
                for k in uow.supply.kits(slug, shipment_id=shipment.id)
                if k.site == site and k.status in (KitStatus.IN_TRANSIT, KitStatus.AT_SITE)
            ]
            if not kits:
                raise NoKitToQuarantine(f"shipment {shipment_code!r} has no kit to quarantine")
        else:
            assert numbers is not None
            kits = uow.supply.kits(slug, numbers=numbers, sites=frozenset({site}))
            missing = sorted(set(numbers) - {k.kit_number for k in kits})
            if missing:
                raise KitNotFound(f"no kit {missing[0]} at site {site!r}")
            for kit in kits:
                check_transition(kit.kit_number, kit.status, KitStatus.QUARANTINED)
        for status in (KitStatus.IN_TRANSIT, KitStatus.AT_SITE):
            ids = [k.id for k in kits if k.status is status]
            if not uow.supply.move_kits(slug, ids, status, KitStatus.QUARANTINED):
                raise Conflict("kits changed meanwhile; retry")
        now = uow.clock.now()
        code = f"EX-{secrets.token_hex(5).upper()}"
        excursion = uow.supply.add_excursion(
            slug,
            code,
            site,
            None if shipment is None else shipment.id,
            description,
            [k.id for k in kits],
            now,
            uow.actor.actor_id,
        )
        uow.record(
            AuditEvent(
                action="excursion.reported",
                entity_type="excursion",
                entity_id=code,
                study=slug,
                reason=description,
                before={k.kit_number: k.status.value for k in kits},
                after={
                    "site": site,
                    "shipment": shipment_code,
                    "kit_numbers": list(excursion.kit_numbers),
                    "kit_status": KitStatus.QUARANTINED.value,
                },
            )
        )
        uow.commit(excursion)
    return excursion


def list_excursions(
    uow: UnitOfWork, principal: Principal, slug: str, site: str | None = None
) -> list[ExcursionRecord]:
    """The excursions the caller may see, open and resolved, of one site or of all its sites."""
    with uow:
        study = _study(uow, principal, slug)
        sites = principal.sites_in(slug)
        if site is not None:
            _site(study, principal, site)
            sites = frozenset({site})
        return uow.supply.excursions(slug, sites=sites)


def resolve_excursion(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    excursion_code: str,
    decision: str,
    reason: str,
) -> ExcursionRecord:
    """Release the excursion's kits back where they were (`release_status`), or reject
    them (`destroyed`: written off). Kits no longer quarantined are left alone."""
    resolution = EXCURSION_DECISIONS.get(decision)
    if resolution is None:
        raise InvalidSupplyRequest("decision must be release or reject")
    with uow:
        _study(uow, principal, slug)
        found = uow.supply.excursion(slug, excursion_code)
        if found is None or found.site is None:
            raise ExcursionNotFound(f"no excursion {excursion_code!r} in study {slug!r}")
        uow.supply.lock_site(slug, found.site)
        excursion = uow.supply.excursion(slug, excursion_code, for_update=True)
        assert excursion is not None
        assert excursion.site is not None
        if excursion.resolution is not None:
            raise ExcursionAlreadyResolved(
                f"excursion {excursion_code!r} is {excursion.resolution} already"
            )
        held = [
            k
            for k in uow.supply.kits(slug, ids=excursion.kit_ids)
            if k.status is KitStatus.QUARANTINED
        ]
        targets: dict[KitStatus, list[KitRecord]] = {}
        for kit in held:
            if resolution == "released":
                origin = kit.quarantined_from or KitStatus.AT_SITE
                new = release_status(origin)
                check_transition(kit.kit_number, kit.status, new, quarantined_from=origin)
            else:
                new = KitStatus.DESTROYED
                check_transition(kit.kit_number, kit.status, new)
            targets.setdefault(new, []).append(kit)
        for new, kits in sorted(targets.items()):
            if not uow.supply.move_kits(slug, [k.id for k in kits], KitStatus.QUARANTINED, new):
                raise Conflict("kits changed meanwhile; retry")
        now = uow.clock.now()
        uow.supply.resolve_excursion(excursion.id, resolution, now, uow.actor.actor_id)
        uow.record(
            AuditEvent(
                action=f"excursion.{resolution}",
                entity_type="excursion",
                entity_id=excursion_code,
                study=slug,
                reason=reason,
                before={"kit_status": KitStatus.QUARANTINED.value},
                after={
                    "resolution": resolution,
                    "kits": {
                        k.kit_number: new.value for new, kits in targets.items() for k in kits
                    },
                },
            )
        )
        result = uow.supply.excursion(slug, excursion_code)
        assert result is not None
        uow.commit(result)
    return result
