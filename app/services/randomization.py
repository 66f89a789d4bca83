"""Randomization use cases: generate lists, register subjects, randomize them.

A randomization, in one transaction: the subject (locked) is registered at an active site,
not yet randomized nor screen-failed, with every eligibility question answered yes; the
site can serve the first visit whatever the arm; the stratum's cursor row is locked
(`FOR UPDATE`) and its next slot taken, in list order, so no slot is skipped or used twice;
the allocation (arm sealed), the subject's new state, the first visit's kits and the audit
event are written; the idempotent response is stored with them.

A registration refuses a taken id with `subject_already_registered` only to a caller who may
see the subject holding it; anyone else gets `subject_id_unavailable`, the same refusal as
for an id reserved to a site outside the caller's scope (the rule: app.domain.subjects).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import product
from typing import Any

from app.domain.access import Principal
from app.domain.audit import AuditEvent
from app.domain.dispensing import InsufficientSupply, quantity_for_weight
from app.domain.errors import Conflict, DomainError, StudyNotFound
from app.domain.randomization import (
    Slot,
    generate_lists,
    number_range,
    randomization_numbers,
    stratum_key,
)
from app.domain.schedule import site_date
from app.domain.study import RandomizationMethod, Study
from app.domain.subjects import (
    NoActiveList,
    SiteNotActive,
    StratumExhausted,
    Subject,
    SubjectAlreadyRegistered,
    SubjectIdUnavailable,
    SubjectNotFound,
    check_eligibility,
    check_randomizable,
    check_strata,
    reserved_site,
)
from app.services import enrolment, supply
from app.services.blinding import ensure_not_locked
from app.services.ports import ListInfo, StoredStudy, StratumPlan, StratumState, UnitOfWork
from app.services.resupply import refused_for_supply
from app.services.subjects import rescreen_target

log = logging.getLogger("iwrs.randomization")

MODES = ("live", "uat")


class ListInUse(Conflict):
    """The list has allocations; it can be extended, never replaced."""

    code = "randomization_list_in_use"


class WrongMethod(Conflict):
    """The study's randomization method does not work this way."""

    code = "wrong_randomization_method"


class InvalidSite(DomainError):
    """The site is not a site of the study."""

    code = "invalid_site"


class SiteForbidden(DomainError):
    """The caller may not act at that site."""

    code = "forbidden"


class ModeMismatch(Conflict):
    """A test (UAT) subject or list cannot be used in live mode, nor the reverse."""

    code = "mode_mismatch"


def _study(
    uow: UnitOfWork, principal: Principal | None, slug: str, *, hold: bool = False
) -> StoredStudy:
    """The study the caller may see; `hold` share-locks its row as it is read, for a change
    that ensure_not_locked guards."""
    if principal is not None and not principal.sees_study(slug):
        raise StudyNotFound(f"no study {slug!r}")
    stored = uow.studies.get(slug, hold=hold)
    if stored is None:
        raise StudyNotFound(f"no study {slug!r}")
    return stored


def all_strata(study: Study) -> list[tuple[str, str | None, dict[str, str]]]:
    """Every stratum of the study: (key, site or None, levels), in key order."""
    order = [f.code for f in study.factors]
    sites: list[str | None] = (
        [s.code for s in study.sites] if study.randomization.stratify_by_site else [None]
    )
    out = []
    for site in sites:
        for combination in product(*(f.level_codes() for f in study.factors)):
            levels = dict(zip(order, combination, strict=True))
            out.append((stratum_key(site, levels, order), site, levels))
    return sorted(out, key=lambda s: s[0])


def subject_stratum(study: Study, subject: Subject) -> str:
    site = subject.site if study.randomization.stratify_by_site else None
    return stratum_key(site, subject.strata, [f.code for f in study.factors])


@dataclass(frozen=True, slots=True)
class GeneratedList:
    study: str
    mode: str
    version: int
    method: str
    strata: int
    slots: int


def plan_lists(study: Study, mode: str, seed: bytes) -> list[StratumPlan]:
    """The strata and slots a seed gives (permuted blocks), with randomization numbers."""
    strata = all_strata(study)
    rnd = study.randomization
    lists = generate_lists(
        seed,
        study.slug,
        mode,  # type: ignore[arg-type]
        [key for key, _, _ in strata],
        study.allocation_ratio,
        rnd.block_sizes,
        rnd.cap_per_stratum,
    )
    total = sum(len(slots) for slots in lists.values())
    low, high = number_range(total)
    numbers = iter(randomization_numbers(seed, f"{study.slug}|{mode}|numbers", total, low, high))
    return [
        StratumPlan(key, site, levels, [(slot, next(numbers)) for slot in lists[key]])
        for key, site, levels in strata
    ]


def generate_list(uow: UnitOfWork, actor_id: str, slug: str) -> GeneratedList:
    """Generate the study's list for its current mode from a fresh secret seed; replaces a
    list that has no allocation yet, never one that has."""
    with uow:
        stored = _study(uow, None, slug)
        study = stored.study
        mode = uow.studies.mode(slug)
        method = study.randomization.method
        if method is RandomizationMethod.UPLOADED_LIST:
            raise WrongMethod(f"study {slug!r} uses an uploaded list; upload it instead")
        existing = uow.lists.active(slug, mode)
        if existing is not None:
            if uow.lists.allocated_count(existing.id):
                raise ListInUse(
                    f"the {mode} list of {slug!r} has allocations; extend a stratum instead"
                )
            uow.lists.supersede(existing.id)
        seed = secrets.token_bytes(32)
        if method is RandomizationMethod.PERMUTED_BLOCK:
            plans = plan_lists(study, mode, seed)
        else:
            plans = plan_minimization(study, mode, seed)
        info = uow.lists.create(slug, mode, method.value, seed, plans, actor_id)
        result = GeneratedList(
            slug, mode, info.version, method.value, len(plans), sum(len(p.slots) for p in plans)
        )
        uow.record(
            AuditEvent(
                action="list.generated",
                entity_type="randomization_list",
                entity_id=f"{mode}:v{info.version}",
                study=slug,
                before=None if existing is None else {"superseded_version": existing.version},
                after={
                    "mode": mode,
                    "version": info.version,
                    "method": method.value,
                    "strata": result.strata,
                    "slots": result.slots,
                },
            )
        )
        uow.commit(result)
    return result


def plan_minimization(study: Study, mode: str, seed: bytes) -> list[StratumPlan]:
    """Minimization has no list: one cursor stratum '*' whose slots only carry the
    randomization numbers, drawn in advance from the seed."""
    count = study.randomization.cap_per_stratum * max(len(study.sites), 1)
    low, high = number_range(count)
    numbers = randomization_numbers(seed, f"{study.slug}|{mode}|numbers", count, low, high)
    slots = [
        (Slot(sequence=i + 1, block=0, block_size=0, arm=""), n) for i, n in enumerate(numbers)
    ]
    return [StratumPlan("*", None, {}, slots)]


def _check_id_available(
    uow: UnitOfWork, principal: Principal, study: Study, slug: str, subject_id: str
) -> None:
    """Refuse a taken id without telling a caller about a subject it may not see
    (app.domain.subjects): one lookup on every path, one refusal, one detail."""
    existing = uow.subjects.get(slug, subject_id)
    if existing is not None and principal.sees_site(slug, existing.site):
        raise SubjectAlreadyRegistered(f"subject {subject_id!r} is registered already")
    reserved = reserved_site(study, subject_id)
    if existing is not None or (reserved is not None and not principal.sees_site(slug, reserved)):
        raise SubjectIdUnavailable(
            f"subject id {subject_id!r} cannot be registered here; choose another id"
        )


def register_subject(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    site: str,
    strata: Mapping[str, str],
    rescreen_of: str | None = None,
) -> Subject:
    """Register a subject at a site of the caller's, with every stratification level; with
    `rescreen_of`, as the re-screening of a screen-failed subject of that site."""
    with uow:
        study = _study(uow, principal, slug, hold=True).study
        ensure_not_locked(uow, slug)
        site_def = study.site(site)
        if site_def is None:
            raise InvalidSite(f"{site!r} is not a site of study {slug!r}")
        allowed = principal.sites_in(slug)
        if allowed is not None and site not in allowed:
            raise SiteForbidden(f"you may not register subjects at site {site!r}")
        if not site_def.active:
            raise SiteNotActive(f"site {site!r} is not active in study {slug!r}")
        levels = check_strata(study, strata)
        _check_id_available(uow, principal, study, slug, subject_id)
        mode = uow.studies.mode(slug)
        earlier = None if rescreen_of is None else rescreen_target(uow, study, site, rescreen_of)
        if earlier is not None and earlier.mode != mode:
            raise ModeMismatch(f"subject {rescreen_of!r} was registered in {earlier.mode} mode")
        subject = uow.subjects.add(
            slug, subject_id, site, levels, mode, None if earlier is None else earlier.pk
        )
        after: dict[str, Any] = {"site": site, "strata": levels, "mode": subject.mode}
        if earlier is not None:
            after["rescreen_of"] = earlier.subject_id
        uow.record(
            AuditEvent(
                action="subject.registered",
                entity_type="subject",
                entity_id=subject_id,
                study=slug,
                subject_id=subject_id,
                after=after,
            )
        )
        uow.commit(subject)
    return subject


@dataclass(frozen=True, slots=True)
class Taken:
    """The slot a randomization takes: where, which arm, which number, and why."""

    stratum: StratumState
    sequence: int
    arm: str
    number: int
    trace: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Randomization:
    subject_id: str
    randomization_number: int
    randomized_at: datetime
    site: str
    stratum: str
    strata: Mapping[str, str]
    dispensation: supply.Dispensation | None


def _take_slot(uow: UnitOfWork, study: Study, info: ListInfo, subject: Subject) -> Taken:
    key = subject_stratum(study, subject)
    stratum = uow.lists.lock_stratum(info.id, key)
    if stratum is None:
        raise StratumExhausted(f"stratum {key!r} has no list; a statistician must extend it")
    sequence = stratum.next_sequence
    if sequence > stratum.length:
        raise StratumExhausted(f"stratum {key!r} is exhausted; a statistician must extend it")
    slot, number = uow.lists.slot(info, stratum, sequence)
    remaining = stratum.length - sequence
    low = remaining <= study.randomization.low_warning
    uow.lists.advance(stratum, sequence + 1, low)
    if low and not stratum.low_warned:
        log.warning(
            "stratum running low", extra={"study": study.slug, "stratum": key, "free": remaining}
        )
        uow.record(
            AuditEvent(
                action="stratum.running_low",
                entity_type="stratum",
                entity_id=key,
                study=study.slug,
                after={"free_slots": remaining, "list_version": info.version},
            )
        )
    return Taken(stratum, sequence, slot.arm, number, None)


def randomize(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    weight_kg: Decimal | None,
    eligibility: Mapping[str, bool] | None = None,
) -> Randomization:
    """Allocate the subject the next slot of its stratum, exactly once (see module doc);
    `eligibility`: the answers to the study's eligibility questions, all yes."""
    with uow:
        study = _study(uow, principal, slug, hold=True).study
        ensure_not_locked(uow, slug)
        subject = uow.subjects.get(
            slug, subject_id, sites=principal.sites_in(slug), for_update=True
        )
        if subject is None:
            raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
        check_randomizable(subject)
        answers = check_eligibility(study, eligibility)
        site = study.site(subject.site)
        if site is None or not site.active:
            raise SiteNotActive(f"site {subject.site!r} is not active in study {slug!r}")
        mode = uow.studies.mode(slug)
        if subject.mode != mode:
            raise ModeMismatch(f"subject {subject_id!r} was registered in {subject.mode} mode")
        enrolment.admit(uow, study, subject, mode)  # site open to enrolment, caps
        info = uow.lists.active(slug, mode)
        if info is None:
            raise NoActiveList(f"study {slug!r} has no {mode} randomization list")
        if weight_kg is not None:
            quantity_for_weight(study.dispensing, weight_kg)
        if not supply.first_visit_servable(uow, study, subject.site, weight_kg):
            waiting = [
                s.code
                for s in uow.supply.shipments(slug, site=subject.site)
                if s.status == "in_transit"
            ]
            first = study.visits[0].code if study.visits else ""
            refused_for_supply(uow, study, subject.site, subject_id, first)
            if waiting:
                raise InsufficientSupply(
                    f"site {subject.site!r} cannot serve the first visit until its "
                    f"pharmacist confirms the receipt of shipment {', '.join(waiting)}"
                )
            raise InsufficientSupply(
                f"site {subject.site!r} cannot serve the first visit; the supply manager is told"
            )
        if info.method == RandomizationMethod.MINIMIZATION.value:
            from app.services.minimization import take_minimized

            taken = take_minimized(uow, study, info, subject)
        else:
            taken = _take_slot(uow, study, info, subject)
        now = uow.clock.now()
        arm, number, key = taken.arm, taken.number, taken.stratum.key
        uow.lists.add_allocation(
            subject, info, taken.stratum, taken.sequence, number, arm, taken.trace, now
        )
        subject = uow.subjects.mark_randomized(subject, number, now)
        randomized: dict[str, Any] = {
            "randomization_number": number,
            "stratum": key,
            "site": subject.site,
            "mode": mode,
            "list_version": info.version,
            "method": info.method,
        }
        if answers:  # the attested eligibility, kept with the subject and in its event
            subject = uow.subjects.set_eligibility(subject, answers)
            randomized["eligibility"] = answers
        uow.record(
            AuditEvent(
                action="subject.randomized",
                entity_type="subject",
                entity_id=subject_id,
                study=slug,
                subject_id=subject_id,
                after=randomized,
            )
        )
        dispensation = None
        if weight_kg is not None:
            first_visit = study.visits[0].code
            dispensation = supply.dispense(
                uow,
                study,
                subject,
                arm,
                first_visit,
                weight_kg,
                site_date(study, subject.site, now),
                fresh=True,
            )
        result = Randomization(
            subject_id, number, now, subject.site, key, dict(subject.strata), dispensation
        )
        uow.commit(result)
    return result
