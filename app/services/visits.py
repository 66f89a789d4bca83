"""Visits off the happy path: a visit recorded missed or held, an unscheduled dispensation,
a subject's schedule and a site's due view (rules: app.domain.schedule and
app.domain.dispensing.visit_check).

Each change runs in one transaction with its audit event; the subject's row is locked first
(then the site's, for kits), as every dispensing use case does. Dates are the site's local
dates. Blinding: the arm is opened only to pick the unscheduled kit type, after every check
that may refuse, and the supply check asks whether the site could serve a subject of ANY
arm, so no answer, refusal, audit event or log line depends on it. Scope: the caller's
studies and, for site roles, sites; a subject or site outside them is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from app.domain.access import Principal
from app.domain.audit import AuditEvent
from app.domain.dispensing import InsufficientSupply, VisitNotAllowed
from app.domain.errors import DomainError, SiteNotFound, StudyNotFound
from app.domain.kits import RandomSource, SecretsRandom
from app.domain.schedule import (
    DueVisit,
    ScheduledVisit,
    UnscheduledNotAllowed,
    VisitKind,
    check_recordable,
    next_due,
    next_unscheduled,
    schedule,
    site_date,
)
from app.domain.study import Study
from app.domain.subjects import (
    ENDED,
    Subject,
    SubjectNotFound,
    SubjectNotRandomized,
    SubjectStatus,
    check_on_treatment,
)
from app.services.blinding import ensure_not_locked
from app.services.ports import UnitOfWork
from app.services.resupply import refused_for_supply
from app.services.supply import Dispensation, hand_out

MAX_REASON = 1000


class InvalidVisitReason(DomainError):
    """A missed or held visit, or an unscheduled dispensation, needs a reason (a text)."""

    code = "visit_reason_required"


@dataclass(frozen=True, slots=True)
class RecordedVisit:
    subject_id: str
    visit: str
    kind: VisitKind
    reason: str
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class SubjectDue:
    subject_id: str
    due: DueVisit


@dataclass(frozen=True, slots=True)
class SiteDue:
    site: str
    timezone: str
    on: date
    subjects: tuple[SubjectDue, ...]


def _reason(text: str) -> str:
    cleaned = text.strip()
    if not cleaned or len(cleaned) > MAX_REASON:
        raise InvalidVisitReason(f"give a reason of 1 to {MAX_REASON} characters")
    return cleaned


def _study(uow: UnitOfWork, principal: Principal, slug: str, *, hold: bool = False) -> Study:
    stored = uow.studies.get(slug, hold=hold) if principal.sees_study(slug) else None
    if stored is None:
        raise StudyNotFound(f"no study {slug!r}")
    return stored.study


def _on_treatment(uow: UnitOfWork, principal: Principal, slug: str, subject_id: str) -> Subject:
    """The caller's randomized subject, not ended, its row locked (scope in the query)."""
    subject = uow.subjects.get(slug, subject_id, sites=principal.sites_in(slug), for_update=True)
    if subject is None:
        raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
    check_on_treatment(subject)
    if subject.status is not SubjectStatus.RANDOMIZED or subject.randomized_at is None:
        raise SubjectNotRandomized(f"subject {subject_id!r} is not randomized")
    return subject


def subject_schedule(uow: UnitOfWork, study: Study, subject: Subject) -> tuple[ScheduledVisit, ...]:
    """The subject's visits with windows and statuses today (inside an open uow); none
    before the randomization."""
    if subject.randomized_at is None:
        return ()
    recorded = {r.visit: r.kind for r in uow.visits.recorded(subject)}
    return schedule(
        study.visits,
        site_date(study, subject.site, subject.randomized_at),
        uow.supply.dispensed_visits(subject),
        recorded,
        site_date(study, subject.site, uow.clock.now()),
        ended=subject.status in ENDED,
    )


def record_visit(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    visit: str,
    kind: VisitKind,
    reason: str,
) -> RecordedVisit:
    """Record that the subject missed a visit, or that its dose was held, with a reason
    (`visit.missed` / `visit.held` audit events); never after the visit was dispensed."""
    text = _reason(reason)
    with uow:
        study = _study(uow, principal, slug, hold=True)
        ensure_not_locked(uow, slug)
        subject = _on_treatment(uow, principal, slug, subject_id)
        assert subject.randomized_at is not None  # checked by _on_treatment
        now = uow.clock.now()
        check_recordable(
            study.visits,
            site_date(study, subject.site, subject.randomized_at),
            uow.supply.dispensed_visits(subject),
            {r.visit for r in uow.visits.recorded(subject)},
            visit,
            site_date(study, subject.site, now),
        )
        uow.visits.record(subject, visit, kind, text, now, uow.actor.actor_id)
        uow.record(
            AuditEvent(
                action=f"visit.{kind.value}",
                entity_type="visit",
                entity_id=f"{subject_id}/{visit}",
                study=slug,
                subject_id=subject_id,
                after={"visit": visit, "status": kind.value, "site": subject.site},
                reason=text,
            )
        )
        result = RecordedVisit(subject_id, visit, kind, text, now)
        uow.commit(result)
    return result


def dispense_unscheduled(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    weight_kg: Decimal,
    reason: str,
    rng: RandomSource | None = None,
) -> Dispensation:
    """Dispense kits outside the schedule by the study's rule (app.domain.schedule), coded
    U1, U2, ...; a refusal for supply tells the supply manager and ships at once, as for a
    scheduled visit (`refused_for_supply`)."""
    text = _reason(reason)
    rng = rng or SecretsRandom()
    with uow:
        study = _study(uow, principal, slug, hold=True)
        ensure_not_locked(uow, slug)
        subject = _on_treatment(uow, principal, slug, subject_id)
        rule = study.unscheduled
        if rule is None:
            raise UnscheduledNotAllowed(f"study {slug!r} allows no unscheduled dispensation")
        uow.supply.lock_site(slug, subject.site)
        code, reference = next_unscheduled(
            study.visits, uow.supply.dispensed_visits(subject), rule.max_per_subject
        )
        arm = uow.lists.arm_of(subject)
        if arm is None:
            raise VisitNotAllowed(f"visit {reference!r} has no kit in the dispensing table")
        try:
            result = hand_out(
                uow,
                study,
                subject,
                arm,
                code,
                reference,
                weight_kg,
                site_date(study, subject.site, uow.clock.now()),
                rng,
                reason=text,
            )
        except InsufficientSupply:
            refused_for_supply(uow, study, subject.site, subject_id, code)
            raise
        uow.commit(result)
    return result


def site_due(
    uow: UnitOfWork, principal: Principal, slug: str, site: str, on: date | None = None
) -> SiteDue:
    """The due view of a site on `on` (a site-local date; default: today there): each
    subject on treatment with its next visit and its overdue ones, by subject id."""
    with uow:
        study = _study(uow, principal, slug)
        found = study.site(site)
        if found is None or not principal.sees_site(slug, site):
            raise SiteNotFound(f"no site {site!r} in study {slug!r}")
        day = on or site_date(study, site, uow.clock.now())
        entries = []
        for s in uow.visits.on_treatment(slug, site):
            planned = schedule(
                study.visits,
                site_date(study, site, s.randomized_at),
                s.dispensed,
                s.recorded,
                day,
            )
            due = next_due(planned)
            if due.next is not None or due.overdue:
                entries.append(SubjectDue(s.subject_id, due))
    return SiteDue(site, found.timezone, day, tuple(entries))
