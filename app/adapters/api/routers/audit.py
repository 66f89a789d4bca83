"""The audit trail of a study, blinded as it is stored, paged by sequence number."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.routing import ThreadPoolRoute
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.services.audit import read_audit
from app.services.ports import AuditQuery

router = APIRouter(prefix="/api/v1", tags=["audit"], route_class=ThreadPoolRoute)


class AuditEventRead(BaseModel):
    seq: int
    occurred_at: datetime
    actor_id: str
    actor_role: str
    action: str
    entity_type: str
    entity_id: str
    subject_id: str | None
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "study": "iris-7a",
                    "events": [
                        {
                            "seq": 42,
                            "occurred_at": "2026-03-02T10:05:17Z",
                            "actor_id": "client:fr-edc",
                            "actor_role": "edc",
                            "action": "subject.randomized",
                            "entity_type": "subject",
                            "entity_id": "FR01-001",
                            "subject_id": "FR01-001",
                            "reason": None,
                            "before": {"status": "registered"},
                            "after": {"status": "randomized", "randomization_number": 1001},
                            "request_id": "4f1c2a9e0b7d4c3e8a6f5d2b1c0e9a87",
                            "prev_hash": "9c1f0e4b" * 8,
                            "hash": "0d3b7a52" * 8,
                        }
                    ],
                    "next_after_seq": None,
                    "head_seq": 42,
                }
            ]
        }
    )

    study: str
    events: list[AuditEventRead]
    next_after_seq: int | None
    head_seq: int


def _utc(at: datetime | None) -> datetime | None:
    """A time as given, or, without a zone (a date, a local-looking time), read as UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


@router.get(
    "/studies/{study}/audit",
    response_model=AuditPage,
    operation_id="get_audit_trail",
    summary="The study's audit trail, blinded, paged by sequence number",
)
def audit_trail(
    study: str,
    principal: Annotated[Principal, Depends(require(Action.AUDIT_READ))],
    container: Annotated[Container, Depends(get_container)],
    subject_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[
        datetime | None, Query(description="a date or a time; without a zone, UTC")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="a date or a time; without a zone, UTC")
    ] = None,
    after_seq: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # the seq column is 32-bit
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    query = AuditQuery(
        chain=study,
        subject_id=subject_id,
        action=action,
        since=_utc(since),
        until=_utc(until),
        after_seq=after_seq,
        limit=limit,
    )
    records, head = read_audit(container.uow(principal.actor), principal, study, query)
    events = [AuditEventRead(**r.payload(), hash=r.hash) for r in records]
    return AuditPage(
        study=study,
        events=events,
        next_after_seq=events[-1].seq if len(events) == limit else None,
        head_seq=head[0] if head else 0,
    )
