"""A subject as a blinded caller sees it, and the end of a subject's participation.

Reading: status, randomization number, dispensed kit numbers; never an arm or a kit type.
Ending: a randomized subject is discontinued (with one of the study's reasons) or completes,
once, in one transaction with its audit event; the arm is never read. Scope: the caller's
studies and, for site roles, sites; a subject outside them is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.access import Principal
from app.domain.audit import AuditEvent
from app.domain.errors import StudyNotFound
from app.domain.study import Study
from app.domain.subjects import (
    Subject,
    SubjectAlreadyEnded,
    SubjectNotFound,
    SubjectStatus,
    check_can_end,
    discontinuation_reason,
)
from app.services.blinding import ensure_not_locked
from app.services.ports import DispensationView, UnitOfWork


@dataclass(frozen=True, slots=True)
class SubjectView:
    subject: Subject
    dispensations: tuple[DispensationView, ...]


def subject_status(
    uow: UnitOfWork, principal: Principal, slug: str, subject_id: str
) -> SubjectView:
    if not principal.sees_study(slug):
        raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
    with uow:
        subject = uow.subjects.get(slug, subject_id, sites=principal.sites_in(slug))
        if subject is None:
            raise SubjectNotFound(f"no subject {subject_id!r} in study {slug!r}")
        views = uow.subjects.dispensations(subject)
    return SubjectView(subject, tuple(views))


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
    return SubjectView(ended, tuple(uow.subjects.dispensations(ended)))
