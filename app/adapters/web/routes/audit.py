"""The auditor's pages: a study's audit trail, filtered by subject, action and time, and the
result of the hash-chain check. Times are typed and shown in the study's zone."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from app.adapters.api.problems import status_for
from app.adapters.web.core import Page, page
from app.adapters.web.messages import InvalidInput, error_message
from app.domain.access import Action
from app.domain.errors import DomainError
from app.services.audit import check_chain, read_audit
from app.services.ports import AuditQuery

router = APIRouter(prefix="/ui/studies/{study}", include_in_schema=False)

PAGE_SIZE = 50
KNOWN_ACTIONS = (
    "subject.registered",
    "subject.randomized",
    "dispensation.created",
    "subject.unblinded",
    "unblinding.refused",
    "shipment.received",
    "excursion.reported",
    "list.generated",
    "list.qc_viewed",
    "study.locked",
    "auth.login",
    "auth.logout",
    "auth.login_refused",
    "auth.user_locked",
    "auth.session_expired",
    "user.created",
)


def _local(text: str, zone: str) -> datetime | None:
    """A `datetime-local` value typed in the study's zone, as an aware instant."""
    if not text.strip():
        return None
    try:
        naive = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput("not a date and time") from None
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=ZoneInfo(zone))


def _compact(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


@router.get("/audit")
def audit_trail(
    ctx: Annotated[Page, Depends(page(Action.AUDIT_READ))],
    subject_id: str = "",
    action: str = "",
    since: str = "",
    until: str = "",
    after_seq: int = 0,
) -> Response:
    assert ctx.study is not None
    filters = {"subject_id": subject_id, "action": action, "since": since, "until": until}
    try:
        query = AuditQuery(
            chain=ctx.study.slug,
            subject_id=subject_id.strip()[:64] or None,
            action=action.strip()[:64] or None,
            since=_local(since, ctx.lang.zone),
            until=_local(until, ctx.lang.zone),
            after_seq=max(after_seq, 0),
            limit=PAGE_SIZE,
        )
        records, head = read_audit(ctx.uow(), ctx.principal, ctx.study.slug, query)
        chain_break = check_chain(ctx.uow(), ctx.principal, ctx.study.slug)
    except DomainError as exc:
        return ctx.render(
            "audit.html",
            status=status_for(exc),
            error=error_message(exc, ctx.lang.gettext),
            filters=filters,
            records=[],
            head=None,
            chain_break=None,
            actions=KNOWN_ACTIONS,
            next_after=None,
        )
    rows = [
        {
            "seq": r.seq,
            "occurred_at": r.occurred_at,
            "actor": r.actor_id,
            "role": r.actor_role,
            "action": r.action,
            "entity": f"{r.entity_type} {r.entity_id}",
            "subject_id": r.subject_id or "",
            "reason": r.reason or "",
            "before": _compact(r.before),
            "after": _compact(r.after),
        }
        for r in records
    ]
    return ctx.render(
        "audit.html",
        filters=filters,
        records=rows,
        head=head,
        chain_break=chain_break,
        actions=KNOWN_ACTIONS,
        next_after=records[-1].seq if len(records) == PAGE_SIZE else None,
    )
