"""Reading one subject as a blinded caller may: status, randomization number, dispensed kit
numbers; never an arm or a kit type. Scope: the caller's studies and, for site roles, sites;
a subject outside them is simply not found."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.access import Principal
from app.domain.subjects import Subject, SubjectNotFound
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
