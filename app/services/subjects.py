"""A subject as a blinded caller sees it, the end of a subject's participation, and the
corrections of its record.

Reading: status, randomization number, dispensed kit numbers, the re-screening links; never
an arm or a kit type. Ending: a randomized subject is discontinued (with one of the study's
reasons) or completes, a registered one fails screening (with one of the study's screen
failure reasons), once, in one transaction with its audit event. Correcting: a stratum level
entered wrongly is corrected with a reason (app.domain.subjects: the allocation, the
stratum's cursor and the list are never touched). The arm is never read. Scope: the
caller's studies and, for site roles, sites; a subject outside them is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.access import Principal
from app.domain.audit import AuditEvent
from app.domain.errors import StudyNotFound
from app.domain.schedule import ScheduledVisit
from app.domain.study import Study
from app.domain.subjects import (
    InvalidCorrection,
    Subject,
    SubjectAlreadyEnded,
    SubjectNotFound,
    SubjectStatus,
    check_can_end,
    check_can_screen_fail,
    check_rescreen,
    corrected_strata,
    discontinuation_reason,
    screen_failure_reason,
)
from app.services.blinding import ensure_not_locked
from app.services.ports import DispensationView, UnitOfWork
from app.services.visits import subject_schedule


@dataclass(frozen=True, slots=True)
class SubjectView:
    subject: Subject
    dispensations: tuple[DispensationView, ...]
    rescreen_of: str | None = None  # the id of the earlier registration this one re-screens
    rescreened_as: str | None = None  # the id of the later registration re-screening this one
    visits: tuple[ScheduledVisit, ...] = ()  # the schedule on site-local dates (visits.py)


def subject_status(
    uow: UnitOfWork, principal: Principal, slug: str, subject_id: str
) -> SubjectView:
    if not principal.sees_study(slug):
        raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
    with uow:
        subject = uow.subjects.get(slug, subject_id, sites=principal.sites_in(slug))
        if subject is None:
            raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
        view = _view(uow, subject)
    return view


def _view(uow: UnitOfWork, subject: Subject) -> SubjectView:
    """Inside an open uow. The linked registrations are at the subject's own site (a
    re-screening stays at its site), so whoever sees the subject sees them."""
    earlier = (
        None
        if subject.rescreen_of is None
        else uow.subjects.by_pk(subject.study, subject.rescreen_of)
    )
    later = uow.subjects.rescreened_as(subject)
    stored = uow.studies.get(subject.study)
    return SubjectView(
        subject,
        tuple(uow.subjects.dispensations(subject)),
        None if earlier is None else earlier.subject_id,
        None if later is None else later.subject_id,
        () if stored is None else subject_schedule(uow, stored.study, subject),
    )


def discontinue(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    reason: str,
    detail: str | None = None,
) -> SubjectView:
    """Stop a randomized subject's treatment for one of the study's reasons ("other" with a
    text); the reason and the text are in the `subject.discontinued` audit event."""
    with uow:
        study = _study(uow, principal, slug)
        text = discontinuation_reason(study, reason, detail)
        view = _end(uow, principal, slug, subject_id, SubjectStatus.DISCONTINUED, reason, text)
        uow.commit(view)
    return view


def complete(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    detail: str | None = None,
) -> SubjectView:
    """A randomized subject completed the study (`subject.completed`, with any text)."""
    with uow:
        _study(uow, principal, slug)
        text = (detail or "").strip() or None
        view = _end(uow, principal, slug, subject_id, SubjectStatus.COMPLETED, None, text)
        uow.commit(view)
    return view


def screen_fail(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    reason: str,
    detail: str | None = None,
) -> SubjectView:
    """A registered subject failed screening, for one of the study's screen failure reasons
    ("other" with a text): `subject.screen_failed`, audited; it is never randomized."""
    with uow:
        study = _study(uow, principal, slug)
        text = screen_failure_reason(study, reason, detail)
        ensure_not_locked(uow, slug)
        subject = _locked(uow, principal, slug, subject_id)
        check_can_screen_fail(subject)
        now = uow.clock.now()
        failed = uow.subjects.mark_screen_failed(subject, now, reason)
        if failed is None:
            raise SubjectAlreadyEnded(f"subject {subject_id!r} has ended already")
        uow.record(
            AuditEvent(
                action="subject.screen_failed",
                entity_type="subject",
                entity_id=subject_id,
                study=slug,
                subject_id=subject_id,
                before={"status": subject.status.value},
                after={
                    "status": failed.status.value,
                    "ended_at": now.isoformat(),
                    "reason": reason,
                    "detail": text,
                },
                reason=": ".join(part for part in (reason, text) if part),
            )
        )
        view = _view(uow, failed)
        uow.commit(view)
    return view


def correct_stratum(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    factor: str,
    level: str,
    reason: str,
) -> SubjectView:
    """Correct one stratification level entered wrongly, with a reason
    (`subject.stratum_corrected`, before and after). Once randomized, `strata` keeps the
    levels used to randomize and `strata_corrected` takes the correction; the allocation,
    the stratum's cursor and the list are not touched."""
    why = reason.strip()
    if not why:
        raise InvalidCorrection("a stratum correction needs a reason")
    with uow:
        study = _study(uow, principal, slug)
        ensure_not_locked(uow, slug)
        subject = _locked(uow, principal, slug, subject_id)
        levels = corrected_strata(study, subject, factor, level)
        before = dict(subject.strata_corrected or subject.strata)
        if subject.status is SubjectStatus.REGISTERED:
            corrected = uow.subjects.set_strata(subject, levels, None)
        else:
            corrected = uow.subjects.set_strata(subject, subject.strata, levels)
        uow.record(
            AuditEvent(
                action="subject.stratum_corrected",
                entity_type="subject",
                entity_id=subject_id,
                study=slug,
                subject_id=subject_id,
                before={"factor": factor, "level": before.get(factor), "strata": before},
                after={
                    "factor": factor,
                    "level": level,
                    "strata": levels,
                    "status": subject.status.value,
                    # Once randomized the allocation stays as randomized (ICH E9).
                    "strata_at_randomization": None
                    if subject.status is SubjectStatus.REGISTERED
                    else dict(subject.strata),
                },
                reason=why,
            )
        )
        view = _view(uow, corrected)
        uow.commit(view)
    return view


def rescreen_target(uow: UnitOfWork, study: Study, site: str, earlier_id: str) -> Subject:
    """Inside an open uow, for a registration at `site` (checked as the caller's): the
    screen-failed subject it re-screens, locked, so that it is re-screened once. Looked up
    at that site only, so a subject elsewhere is not found, as one the caller cannot see."""
    earlier = uow.subjects.get(study.slug, earlier_id, sites=frozenset({site}), for_update=True)
    rescreens_before, cursor = 0, earlier
    while cursor is not None and cursor.rescreen_of is not None and rescreens_before <= 100:
        rescreens_before += 1
        cursor = uow.subjects.by_pk(study.slug, cursor.rescreen_of)
    later = None if earlier is None else uow.subjects.rescreened_as(earlier)
    return check_rescreen(study, earlier, rescreens_before, later is not None)


def _locked(uow: UnitOfWork, principal: Principal, slug: str, subject_id: str) -> Subject:
    subject = uow.subjects.get(slug, subject_id, sites=principal.sites_in(slug), for_update=True)
    if subject is None:
        raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
    return subject


def _study(uow: UnitOfWork, principal: Principal, slug: str) -> Study:
    stored = uow.studies.get(slug, hold=True) if principal.sees_study(slug) else None
    if stored is None:
        raise StudyNotFound(f"no study {slug!r}")
    return stored.study


def _end(
    uow: UnitOfWork,
    principal: Principal,
    slug: str,
    subject_id: str,
    status: SubjectStatus,
    reason: str | None,
    detail: str | None,
) -> SubjectView:
    """Inside an open uow: move the subject to `status`, audited; no commit."""
    ensure_not_locked(uow, slug)
    subject = uow.subjects.get(slug, subject_id, sites=principal.sites_in(slug), for_update=True)
    if subject is None:
        raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
    check_can_end(subject)
    now = uow.clock.now()
    ended = uow.subjects.mark_ended(subject, status, now, reason)
    if ended is None:
        raise SubjectAlreadyEnded(f"subject {subject_id!r} has ended already")
    after: dict[str, str | None] = {"status": status.value, "ended_at": now.isoformat()}
    if reason is not None:
        after["reason"] = reason
    after["detail"] = detail
    uow.record(
        AuditEvent(
            action=f"subject.{status.value}",
            entity_type="subject",
            entity_id=subject_id,
            study=slug,
            subject_id=subject_id,
            before={"status": subject.status.value},
            after=after,
            reason=": ".join(part for part in (reason, detail) if part) or None,
        )
    )
    return _view(uow, ended)
