"""Resupply use cases: whole sets shipped from a depot, the initial shipments, and the daily
review that alone decides resupply shipments (rules: app.domain.resupply; sets:
app.domain.dispensing.SetPool).

Nothing here runs inside a dispensation: a shipment is decided at the study's daily review,
so its time says nothing of the visit that used a kit. A depot that cannot make a whole set
ships nothing; either way a shortfall is audited and the supply manager notified (outbox
`supply.depot_short`), with counts of sets, never a kit type.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from fractions import Fraction

from app.domain.audit import AuditEvent
from app.domain.dispensing import KitCandidate, SetPool, dispensable
from app.domain.errors import Conflict, StudyNotFound
from app.domain.kits import KitStatus, RandomSource, SecretsRandom
from app.domain.resupply import (
    OnTreatment,
    SiteCounts,
    coming_demand,
    initial_sets,
    resupply_sets,
    top_share,
)
from app.domain.study import Site, Study
from app.services.ports import NewKit, ShipmentRecord, UnitOfWork

log = logging.getLogger("iwrs.supply")

MAX_ATTEMPTS = 20  # choices made again when another transaction took a chosen kit


class SupplyBusy(Conflict):
    """Kits kept being taken by concurrent requests; retry."""

    code = "supply_busy"


def _depot_short(
    uow: UnitOfWork, study: Study, site: Site, kind: str, sets_short: int, now: datetime
) -> None:
    """Tell the supply manager (audited, and in the outbox) that a depot fell short."""
    log.warning(
        "depot short for a shipment",
        extra={"study": study.slug, "depot": site.depot, "site": site.code, "short": sets_short},
    )
    uow.blinding.notify(
        study.slug,
        "supply.depot_short",
        {"depot": site.depot, "site": site.code, "kind": kind, "sets_short": sets_short},
        now,
    )


def _shipment_not_sent(
    uow: UnitOfWork, study: Study, site: Site, kind: str, sets_short: int, now: datetime
) -> None:
    _depot_short(uow, study, site, kind, sets_short, now)
    uow.record(
        AuditEvent(
            action="shipment.not_sent",
            entity_type="site",
            entity_id=site.code,
            study=study.slug,
            after={"kind": kind, "depot": site.depot, "sets_short": sets_short},
            reason="the depot cannot make a whole set of every kit type",
        )
    )


def _shipment_sent(
    uow: UnitOfWork,
    study: Study,
    site: Site,
    kind: str,
    kit_ids: Sequence[int],
    sets: int,
    sets_short: int,
    now: datetime,
) -> ShipmentRecord:
    """Record the shipment of kits already in transit to the site (audited)."""
    if sets_short:
        _depot_short(uow, study, site, kind, sets_short, now)
    slug = study.slug
    code = f"SH-{site.code}-{uow.supply.shipment_count(slug, site.code) + 1:03d}"
    shipment = uow.supply.add_shipment(slug, code, kind, site.depot, site.code, kit_ids, now)
    after: dict[str, object] = {
        "kind": kind,
        "depot": site.depot,
        "site": site.code,
        "sets": sets,
        "kit_count": len(shipment.kit_numbers),
        "kit_numbers": list(shipment.kit_numbers),
        "kit_status": KitStatus.IN_TRANSIT.value,
    }
    if sets_short:
        after["sets_short"] = sets_short
    uow.record(
        AuditEvent(
            action="shipment.created",
            entity_type="shipment",
            entity_id=code,
            study=slug,
            before={"kit_status": KitStatus.AT_DEPOT.value},
            after=after,
        )
    )
    return shipment


def ship_sets(
    uow: UnitOfWork,
    study: Study,
    site: Site,
    sets: int,
    kind: str,
    now: datetime,
    rng: RandomSource,
) -> ShipmentRecord | None:
    """Send `sets` whole sets (fewer when the depot runs short) from the site's depot (the
    site is locked); None when the depot cannot make one."""
    slug, dnd, on_date = study.slug, study.supply.do_not_dispense_days, now.date()
    types = len(study.supply.levels)
    for _attempt in range(MAX_ATTEMPTS):
        candidates = uow.supply.stock(slug, KitStatus.AT_DEPOT, depot=site.depot)
        chosen = SetPool(candidates, study.supply.levels, on_date, dnd).take(sets, rng)
        sent = len(chosen) // types if types else 0
        if not chosen:
            _shipment_not_sent(uow, study, site, kind, sets, now)
            return None
        if not uow.supply.move_kits(
            slug, chosen, KitStatus.AT_DEPOT, KitStatus.IN_TRANSIT, site=site.code
        ):
            continue
        return _shipment_sent(uow, study, site, kind, chosen, sent, sets - sent, now)
    raise SupplyBusy(f"the depot's kits for site {site.code!r} kept changing; retry")


# --- initial shipments ---------------------------------------------------------------------


def plan_initial_shipments(
    study: Study, kits: Sequence[NewKit], now: datetime, rng: RandomSource
) -> tuple[list[NewKit], dict[str, int]]:
    """Each active site's initial sets, chosen from a new kit list before it is stored (the
    study is locked, nothing else can take them): the kits with their destination, and by
    site how many sets were short (sites absent got nothing)."""
    by_depot: dict[str, list[KitCandidate]] = {}
    for index, kit in enumerate(kits):
        by_depot.setdefault(kit.depot, []).append(
            KitCandidate(index, kit.kit_type, kit.lot.expiry_date, lot=kit.lot.code)
        )
    on_date, dnd = now.date(), study.supply.do_not_dispense_days
    types = study.supply.levels
    pools = {depot: SetPool(found, types, on_date, dnd) for depot, found in by_depot.items()}
    wanted = initial_sets(types)
    destination: dict[int, str] = {}
    shorts: dict[str, int] = {}
    for site in sorted(study.sites, key=lambda s: s.code):
        if not site.active:
            continue
        pool = pools.get(site.depot)
        taken = pool.take(wanted, rng) if pool is not None else []
        destination.update(dict.fromkeys(taken, site.code))
        shorts[site.code] = wanted - (len(taken) // len(types) if types else 0)
    planned = [
        replace(kit, site=destination[index]) if index in destination else kit
        for index, kit in enumerate(kits)
    ]
    return planned, shorts


def record_initial_shipments(
    uow: UnitOfWork, study: Study, shorts: Mapping[str, int], now: datetime
) -> list[ShipmentRecord]:
    """The shipment records of `plan_initial_shipments`' kits, once stored in transit."""
    sent = []
    wanted = initial_sets(study.supply.levels)
    for code, short in sorted(shorts.items()):
        site = study.site(code)
        assert site is not None
        in_transit = uow.supply.stock(study.slug, KitStatus.IN_TRANSIT, site=code)
        if not in_transit:
            _shipment_not_sent(uow, study, site, "initial", short, now)
            continue
        ids = [c.kit_id for c in in_transit]
        sent.append(_shipment_sent(uow, study, site, "initial", ids, wanted - short, short, now))
    return sent


def ship_initial(
    uow: UnitOfWork, study: Study, now: datetime, rng: RandomSource | None = None
) -> list[ShipmentRecord]:
    """The initial shipment to every active site that has had none (inside an open uow)."""
    rng = rng or SecretsRandom()
    sent = []
    for site in sorted(study.sites, key=lambda s: s.code):
        if not site.active:
            continue
        uow.supply.lock_site(study.slug, site.code)
        if uow.supply.shipment_count(study.slug, site.code):
            continue
        shipment = ship_sets(
            uow, study, site, initial_sets(study.supply.levels), "initial", now, rng
        )
        if shipment is not None:
            sent.append(shipment)
    return sent


# --- the daily review ----------------------------------------------------------------------


def review_site(
    uow: UnitOfWork,
    study: Study,
    site_code: str,
    now: datetime,
    rng: RandomSource,
    kind: str = "resupply",
    *,
    refused: bool = False,
) -> ShipmentRecord | None:
    """Ship whole sets to the site when what it can count says a type may run short
    (app.domain.resupply); locks the site. `refused`: a visit was just refused there, so
    ship at least the base whatever the counts, unless kits are already on their way. From a
    later visit's refusal on, the site's share is 1 (the first visit's refusals, often for
    an initial shipment not yet received, do not count). An inactive site is not
    resupplied."""
    site = study.site(site_code)
    if site is None or not site.active:
        return None
    slug, today = study.slug, now.date()
    uow.supply.lock_site(slug, site_code)
    at_site = uow.supply.stock(slug, KitStatus.AT_SITE, site=site_code)
    stock = len(dispensable(at_site, today, study.supply.do_not_dispense_days))
    in_transit = len(uow.supply.stock(slug, KitStatus.IN_TRANSIT, site=site_code))
    stock += in_transit
    largest = max((b.quantity for b in study.dispensing.weight_bands), default=1)
    subjects = [
        OnTreatment(
            found.subject.randomized_at.date(), found.dispensed, found.last_quantity or largest
        )
        for found in uow.resupply.on_treatment(slug, site_code)
        if found.subject.randomized_at is not None
    ]
    levels = study.supply.levels
    counts = SiteCounts(
        shipped=uow.resupply.shipped_to(slug, site_code) // max(1, len(levels)),
        stock=stock,
        demand=coming_demand(study, subjects, today),
    )
    first = min(study.visits, key=lambda v: v.day).code if study.visits else ""
    refusals = uow.resupply.had_refusal(slug, site_code, but=first)
    share = study.supply.type_share or top_share(study)
    sets = resupply_sets(levels, counts, Fraction(1) if refusals else share)
    if refused and not in_transit:
        sets = max(sets, max(lv.resupply - lv.trigger for lv in levels.values()), 1)
    if not sets:
        return None
    return ship_sets(uow, study, site, sets, kind, now, rng)


def refused_for_supply(
    uow: UnitOfWork, study: Study, site_code: str, subject_id: str, visit: str
) -> None:
    """After a visit was refused because the site could not serve it to a subject of every
    arm (inside the open uow of the refused work): roll that work back, then, committed in
    its own transaction, tell the supply manager (audit event and outbox
    `supply.visit_refused`, naming the site, the subject and the visit, never a type) and
    ship at once what the review's rule asks (kind `emergency`). The refusal and hence this
    shipment are the same whatever the subject's arm. The caller raises the refusal."""
    uow.rollback()
    now = uow.clock.now()
    uow.supply.lock_site(study.slug, site_code)
    uow.blinding.notify(
        study.slug,
        "supply.visit_refused",
        {"site": site_code, "subject_id": subject_id, "visit": visit},
        now,
    )
    uow.record(
        AuditEvent(
            action="supply.visit_refused",
            entity_type="site",
            entity_id=site_code,
            study=study.slug,
            subject_id=subject_id,
            after={"visit": visit},
            reason="the site could not serve the visit to a subject of every arm",
        )
    )
    review_site(uow, study, site_code, now, SecretsRandom(), "emergency", refused=True)
    uow.commit()


def daily_review(
    uow: UnitOfWork, slug: str, now: datetime | None = None, rng: RandomSource | None = None
) -> list[ShipmentRecord] | None:
    """The study's resupply review for today's UTC date, every active site in one audited
    transaction; None when today's review was done already (by this or another process)."""
    rng = rng or SecretsRandom()
    with uow:
        now = now or uow.clock.now()
        stored = uow.studies.get(slug)
        if stored is None:
            raise StudyNotFound(f"no study {slug!r}")
        study = stored.study
        if not uow.resupply.claim_review(slug, now.date(), now):
            return None
        shipments = [
            shipment
            for site in sorted(study.sites, key=lambda s: s.code)
            if (shipment := review_site(uow, study, site.code, now, rng)) is not None
        ]
        uow.record(
            AuditEvent(
                action="resupply.reviewed",
                entity_type="study",
                entity_id=slug,
                study=slug,
                after={
                    "review_date": now.date().isoformat(),
                    "shipments": [s.code for s in shipments],
                },
            )
        )
        uow.commit(shipments)
    return shipments
