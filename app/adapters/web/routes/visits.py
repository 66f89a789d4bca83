"""Visits off the happy path on the pages: a visit recorded missed or held and an unscheduled
dispensation (forms on the subject page, templates/_visit_schedule.html), and the site's due
visits. The use cases are the API's (app.services.visits); nothing shown names an arm or a
kit type."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from app.adapters.api.problems import status_for
from app.adapters.web.core import Page, page
from app.adapters.web.messages import InvalidInput, error_message
from app.adapters.web.routes.subjects import SubjectId, _weight, record_change
from app.domain.access import Action, Principal
from app.domain.errors import DomainError
from app.domain.schedule import VisitKind
from app.services import visits as visits_service
from app.services.ports import UnitOfWork

router = APIRouter(prefix="/ui/studies/{study}", include_in_schema=False)

Text = Annotated[str, Form(max_length=2000)]


@router.post("/subjects/{subject_id}/visit-records")
def record_visit(
    ctx: Annotated[Page, Depends(page(Action.VISIT_RECORD))],
    subject_id: SubjectId,
    visit: Text = "",
    kind: Text = "",
    reason: Text = "",
) -> Response:
    def record(uow: UnitOfWork, principal: Principal, slug: str, sid: str) -> None:
        if kind not in {k.value for k in VisitKind}:
            raise InvalidInput("choose missed or held")
        visits_service.record_visit(uow, principal, slug, sid, visit, VisitKind(kind), reason)

    return record_change(ctx, subject_id, f"visit_{kind}", record)


@router.post("/subjects/{subject_id}/unscheduled-dispensations")
def dispense_unscheduled(
    ctx: Annotated[Page, Depends(page(Action.DISPENSE))],
    subject_id: SubjectId,
    weight_kg: Text = "",
    reason: Text = "",
) -> Response:
    def dispense(uow: UnitOfWork, principal: Principal, slug: str, sid: str) -> None:
        weight = _weight(weight_kg, required=True)
        assert weight is not None
        visits_service.dispense_unscheduled(uow, principal, slug, sid, weight, reason)

    return record_change(ctx, subject_id, "dispensed", dispense)


@router.get("/due")
def due_visits(
    ctx: Annotated[Page, Depends(page(Action.SUBJECT_READ))], site: str = "", on: str = ""
) -> Response:
    """The site's subjects on treatment with their next visit ("due today" first)."""
    assert ctx.study is not None
    allowed = ctx.principal.sites_in(ctx.study.slug)
    sites = [s.code for s in ctx.study.sites if allowed is None or s.code in allowed]
    chosen = site or (sites[0] if sites else "")
    try:
        try:
            day = date.fromisoformat(on) if on.strip() else None
        except ValueError:
            raise InvalidInput("not a date") from None
        due = visits_service.site_due(ctx.uow(), ctx.principal, ctx.study.slug, chosen, day)
    except DomainError as exc:
        return ctx.render(
            "due.html",
            status=status_for(exc),
            sites=sites,
            site=chosen,
            due=None,
            error=error_message(exc, ctx.lang.gettext),
        )
    return ctx.render("due.html", sites=sites, site=chosen, due=due)
