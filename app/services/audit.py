"""Reading the audit trail (auditors, administrators) within the caller's studies."""

from __future__ import annotations

from app.domain.access import Principal
from app.domain.audit import AuditRecord
from app.domain.errors import StudyNotFound
from app.services.ports import AuditQuery, UnitOfWork


def read_audit(
    uow: UnitOfWork, principal: Principal, study: str, query: AuditQuery
) -> tuple[list[AuditRecord], tuple[int, str] | None]:
    if not principal.sees_study(study):
        raise StudyNotFound(f"no study {study!r}")
    with uow:
        if not uow.studies.exists(study):
            raise StudyNotFound(f"no study {study!r}")
        return uow.audit.page(query), uow.audit.head(study)
