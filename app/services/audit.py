"""Reading the audit trail (auditors, administrators) within the caller's studies."""

from __future__ import annotations

from itertools import takewhile

from app.domain.access import Principal
from app.domain.audit import AuditRecord, ChainBreak, verify_chain
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


def check_chain(uow: UnitOfWork, principal: Principal, study: str) -> ChainBreak | None:
    """Recompute the study's hash chain against its recorded head: the first break, or None
    when intact (the check `iwrs audit verify` makes, for one study)."""
    if not principal.sees_study(study):
        raise StudyNotFound(f"no study {study!r}")
    with uow:
        if not uow.studies.exists(study):
            raise StudyNotFound(f"no study {study!r}")
        head = uow.audit.head(study)
        # Events appended after the head was read are for the next check, not a break.
        last = head[0] if head else 0
        records = takewhile(lambda r: r.seq <= last, uow.audit.records(study))
        return verify_chain(study, records, head)
