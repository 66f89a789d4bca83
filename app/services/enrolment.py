"""Enrolment control use cases: caps (rules: app.domain.enrolment), closing and reopening a
site to enrolment, activating and deactivating a site, and the enrolment status.

Inside a randomization (`admit`, in its transaction): the site's row is locked (the lock its
dispensing and resupply take) and its `enrolment_open` read; then the caps that govern the
subject are locked in id order and counted, so two randomizations racing for a cap's last
place are serialized and exactly one wins. A refusal rolls the randomization back and is
audited in a transaction of its own; it is decided before any slot is read, so it never
depends on the arm.

A site's activation is part of the stored study definition: activating (or deactivating)
rewrites the site's `active` in the stored definition, as a new version of it, in one audited
transaction that also sends the initial shipment of a site that has had none, once the kit
list exists. Loading a study file afterwards keeps every known site's stored activation
(`keep_activation`): the file's `active` applies only to a site loaded for the first time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.domain.access import Principal
from app.domain.audit import AuditEvent
from app.domain.enrolment import (
    CapScope,
    Enrollee,
    EnrolmentCap,
    EnrolmentCapNotFound,
    EnrolmentCapReached,
    InvalidEnrolmentCap,
    SiteAlreadyActive,
    SiteEnrolmentAlreadyClosed,
    SiteEnrolmentAlreadyOpen,
    SiteEnrolmentClosed,
    Verdict,
    canonical_target,
    check_limits,
    governs,
    require_reason,
    state,
    stratum_levels,
    tally,
    verdict,
)
from app.domain.errors import DomainError, SiteNotFound, StudyNotFound
from app.domain.kits import SecretsRandom
from app.domain.resupply import initial_sets
from app.domain.study import Study
from app.domain.subjects import SiteNotActive, Subject
from app.services.ports import ShipmentRecord, StoredStudy, UnitOfWork
from app.services.resupply import ship_sets

# --- inside a randomization ------------------------------------------------------------------


def _refuse(uow: UnitOfWork, study: Study, subject: Subject, error: DomainError) -> None:
    """Roll the randomization back, audit the refusal in its own transaction, raise it."""
    uow.rollback()
    uow.record(
        AuditEvent(
            action="enrolment.refused",
            entity_type="subject",
            entity_id=subject.subject_id,
            study=study.slug,
            subject_id=subject.subject_id,
            after={"code": error.code, "site": subject.site},
            reason=error.detail,
        )
    )
    uow.commit()
    raise error


def _count(uow: UnitOfWork, slug: str, mode: str, cap: EnrolmentCap) -> int:
    if cap.scope is CapScope.STUDY:
        return uow.enrolment.count_randomized(slug, mode)
    if cap.scope is CapScope.COUNTRY:
        return uow.enrolment.count_randomized(slug, mode, country=cap.target)
    if cap.scope is CapScope.SITE:
        return uow.enrolment.count_randomized(slug, mode, site=cap.target)
    site, levels = stratum_levels(cap.target)
    return uow.enrolment.count_randomized(slug, mode, site=site, levels=levels)


def _place(cap: EnrolmentCap) -> str:
    return "the study" if cap.scope is CapScope.STUDY else f"{cap.scope.value} {cap.target!r}"


def admit(uow: UnitOfWork, study: Study, subject: Subject, mode: str) -> None:
    """Refuse the randomization of `subject` at a site closed to enrolment or past a hard
    cap; record the crossing of a warning threshold (inside the randomization's uow)."""
    slug = study.slug
    site = uow.enrolment.site(slug, subject.site, for_update=True)
    if site is None:
        raise SiteNotActive(f"site {subject.site!r} is not active in study {slug!r}")
    if not site.enrolment_open:
        _refuse(
            uow,
            study,
            subject,
            SiteEnrolmentClosed(f"site {subject.site!r} is closed to enrolment"),
        )
    enrollee = Enrollee(site.code, site.country, subject.strata)
    governing = [cap.id for cap in uow.enrolment.caps(slug) if governs(cap, enrollee)]
    warnings: list[tuple[EnrolmentCap, int]] = []
    for cap in uow.enrolment.lock_caps(slug, governing):
        counted = _count(uow, slug, mode, cap)
        found = verdict(cap, counted)
        if found is Verdict.REFUSE:
            _refuse(
                uow,
                study,
                subject,
                EnrolmentCapReached(
                    f"the enrolment cap of {_place(cap)} is reached "
                    f"({counted} randomized, cap {cap.cap})"
                ),
            )
        if found is Verdict.WARN:
            warnings.append((cap, counted + 1))
    for cap, counted in warnings:
        payload = {
            "scope": cap.scope.value,
            "target": cap.target,
            "warning_at": cap.warning_at,
            "cap": cap.cap,
            "randomized": counted,
        }
        uow.blinding.notify(slug, "enrolment.cap_warning", payload, uow.clock.now())
        uow.record(
            AuditEvent(
                action="enrolment.cap_warning",
                entity_type="enrolment_cap",
                entity_id=f"{cap.scope.value}:{cap.target}",
                study=slug,
                subject_id=subject.subject_id,
                after=payload,
                reason="the randomized subjects reached the cap's warning threshold",
            )
        )


# --- caps ------------------------------------------------------------------------------------


def _stored(uow: UnitOfWork, principal: Principal | None, slug: str, **lock: bool) -> StoredStudy:
    if principal is not None and not principal.sees_study(slug):
        raise StudyNotFound(f"no study {slug!r}")
    stored = uow.studies.get(slug, **lock)
    if stored is None:
        raise StudyNotFound(f"no study {slug!r}")
    return stored


@dataclass(frozen=True, slots=True)
class CapStatus:
    """A cap with the subjects it counts and its state: open, warning, reached (cleared:
    the cap just removed)."""

    cap: EnrolmentCap
    randomized: int
    state: str


def set_cap(
    uow: UnitOfWork,
    principal: Principal | None,
    slug: str,
    scope: str,
    target: str,
    warning_at: int | None,
    cap: int | None,
    reason: str | None = None,
) -> CapStatus:
    """Set (or replace) the warning threshold and hard cap of one scope and target; both
    None clears the cap. Audited; a cap below the present count stops enrolment there."""
    try:
        kind = CapScope(scope)
    except ValueError:
        raise InvalidEnrolmentCap(
            f"the scope is one of {', '.join(s.value for s in CapScope)}"
        ) from None
    with uow:
        study = _stored(uow, principal, slug).study
        where = canonical_target(study, kind, target)
        clearing = warning_at is None and cap is None
        if not clearing:
            check_limits(warning_at, cap)
        mode = uow.studies.mode(slug)
        existing = uow.enrolment.cap(slug, kind, where)
        now, actor = uow.clock.now(), uow.actor.actor_id
        before = None if existing is None else _limits(existing)
        if clearing:
            if existing is None:
                raise EnrolmentCapNotFound(f"no enrolment cap for {kind.value} {where!r}")
            uow.enrolment.delete_cap(slug, existing)
            saved = EnrolmentCap(kind, where, None, None, now, actor)
        else:
            saved = uow.enrolment.save_cap(
                slug, EnrolmentCap(kind, where, warning_at, cap, now, actor)
            )
        counted = _count(uow, slug, mode, saved)
        result = CapStatus(saved, counted, "cleared" if clearing else state(saved, counted))
        uow.record(
            AuditEvent(
                action="enrolment.cap_cleared" if clearing else "enrolment.cap_set",
                entity_type="enrolment_cap",
                entity_id=f"{kind.value}:{where}",
                study=slug,
                before=before,
                after=None if clearing else {**_limits(saved), "randomized": counted},
                reason=(reason or "").strip() or None,
            )
        )
        uow.commit(result)
    return result


def _limits(cap: EnrolmentCap) -> dict[str, Any]:
    return {"warning_at": cap.warning_at, "cap": cap.cap}


# --- a site's enrolment and activation ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteChange:
    """A site after an enrolment or activation change; `shipment`: the initial shipment an
    activation sent (None: none sent, see `note`)."""

    study: str
    site: str
    active: bool
    enrolment_open: bool
    definition_version: int
    shipment: ShipmentRecord | None = None
    note: str | None = None


def _site_of(stored: StoredStudy, principal: Principal | None, code: str) -> None:
    allowed = None if principal is None else principal.sites_in(stored.slug)
    if stored.study.site(code) is None or (allowed is not None and code not in allowed):
        raise SiteNotFound(f"no site {code!r} in study {stored.slug!r}")


def set_site_enrolment(
    uow: UnitOfWork,
    principal: Principal | None,
    slug: str,
    code: str,
    is_open: bool,
    reason: str | None,
) -> SiteChange:
    """Close (`is_open` False) or reopen a site to enrolment, with a reason; audited. A
    closed site refuses randomizations and keeps dispensing and its resupply."""
    why = require_reason(reason)
    with uow:
        stored = _stored(uow, principal, slug)
        _site_of(stored, principal, code)
        site = uow.enrolment.site(slug, code, for_update=True)
        if site is None:
            raise SiteNotFound(f"no site {code!r} in study {slug!r}")
        if site.enrolment_open == is_open:
            if is_open:
                raise SiteEnrolmentAlreadyOpen(f"site {code!r} is open to enrolment already")
            raise SiteEnrolmentAlreadyClosed(f"site {code!r} is closed to enrolment already")
        uow.enrolment.set_enrolment_open(slug, code, is_open)
        uow.record(
            AuditEvent(
                action="site.enrolment_reopened" if is_open else "site.enrolment_closed",
                entity_type="site",
                entity_id=code,
                study=slug,
                before={"enrolment_open": site.enrolment_open},
                after={"enrolment_open": is_open},
                reason=why,
            )
        )
        result = SiteChange(slug, code, site.active, is_open, stored.version)
        uow.commit(result)
    return result


def with_activation(
    study: Study, document: Mapping[str, Any], active: Mapping[str, bool]
) -> tuple[Study, dict[str, Any]]:
    """The study and its stored document with those sites' `active` set."""
    changed = copy.deepcopy(dict(document))
    for site in changed.get("sites", []):
        if site.get("code") in active:
            site["active"] = active[site["code"]]
    sites = tuple(replace(s, active=active[s.code]) if s.code in active else s for s in study.sites)
    return replace(study, sites=sites), changed


def keep_activation(
    existing: StoredStudy, study: Study, document: Mapping[str, Any]
) -> tuple[Study, dict[str, Any], tuple[str, ...]]:
    """A new definition of a loaded study with every known site's stored activation kept
    (sites are activated and deactivated by their own audited action); the sites whose
    file said otherwise."""
    stored = {s.code: s.active for s in existing.study.sites}
    kept = {s.code: stored[s.code] for s in study.sites if stored.get(s.code, s.active) != s.active}
    merged, changed = with_activation(study, document, kept)
    return merged, changed, tuple(sorted(kept))


def set_site_active(
    uow: UnitOfWork,
    principal: Principal | None,
    slug: str,
    code: str,
    active: bool,
    reason: str | None = None,
) -> SiteChange:
    """Activate a site (sending its initial shipment when it has had none and the kit list
    exists) or deactivate it (with a reason: no registration, randomization nor resupply
    there any more; closing enrolment keeps the resupply). Audited, one transaction."""
    why = ((reason or "").strip() or None) if active else require_reason(reason)
    with uow:
        stored = _stored(uow, principal, slug, for_update=True)
        _site_of(stored, principal, code)
        site = stored.study.site(code)
        assert site is not None
        if site.active == active:
            if active:
                raise SiteAlreadyActive(f"site {code!r} is active already")
            raise SiteNotActive(f"site {code!r} is not active in study {slug!r}")
        study, document = with_activation(stored.study, stored.document, {code: active})
        version = stored.version + 1
        uow.studies.save(study, document, stored.sha256, version)
        now = uow.clock.now()
        uow.record(
            AuditEvent(
                action="site.activated" if active else "site.deactivated",
                entity_type="site",
                entity_id=code,
                study=slug,
                before={"active": not active, "definition_version": stored.version},
                after={"active": active, "definition_version": version},
                reason=why,
            )
        )
        shipment, note = None, None
        if active:
            shipment, note = _initial_shipment(uow, study, code, now)
        state_now = uow.enrolment.site(slug, code)
        result = SiteChange(
            slug,
            code,
            active,
            True if state_now is None else state_now.enrolment_open,
            version,
            shipment,
            note,
        )
        uow.commit(result)
    return result


def _initial_shipment(
    uow: UnitOfWork, study: Study, code: str, now: Any
) -> tuple[ShipmentRecord | None, str | None]:
    slug = study.slug
    if not uow.supply.kit_count(slug):
        return None, "no kit list yet: the initial shipment leaves when it is generated"
    uow.supply.lock_site(slug, code)
    if uow.supply.shipment_count(slug, code):
        return None, "the site has had shipments: the daily review resupplies it"
    site = study.site(code)
    assert site is not None
    sets = initial_sets(study.supply.levels)
    shipment = ship_sets(uow, study, site, sets, "initial", now, SecretsRandom())
    if shipment is None:
        return None, "the depot cannot make a whole set; the supply manager is told"
    return shipment, None


# --- the status ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteEnrolment:
    code: str
    name: str
    country: str
    active: bool
    enrolment_open: bool
    randomized: int


@dataclass(frozen=True, slots=True)
class EnrolmentStatus:
    """Randomized subjects (ever, in the study's mode) by study, country, site and
    study-wide stratum, the sites' states and the caps: counts only, never by arm."""

    study: str
    mode: str
    randomized: int
    by_country: Mapping[str, int]
    by_stratum: Mapping[str, int]
    sites: tuple[SiteEnrolment, ...]
    caps: tuple[CapStatus, ...]


def enrolment_status(uow: UnitOfWork, principal: Principal | None, slug: str) -> EnrolmentStatus:
    with uow:
        study = _stored(uow, principal, slug).study
        mode = uow.studies.mode(slug)
        enrollees = uow.enrolment.enrollees(slug, mode)
        caps = uow.enrolment.caps(slug)
        closed = {
            s.code
            for s in study.sites
            if (found := uow.enrolment.site(slug, s.code)) and not found.enrolment_open
        }
    counts = tally(enrollees, [f.code for f in study.factors])
    sites = tuple(
        SiteEnrolment(
            s.code,
            s.name,
            s.country,
            s.active,
            s.code not in closed,
            counts.by_site.get(s.code, 0),
        )
        for s in study.sites
    )
    statuses = []
    for cap in caps:
        counted = sum(1 for e in enrollees if governs(cap, e))
        statuses.append(CapStatus(cap, counted, state(cap, counted)))
    return EnrolmentStatus(
        slug, mode, counts.total, counts.by_country, counts.by_stratum, sites, tuple(statuses)
    )
