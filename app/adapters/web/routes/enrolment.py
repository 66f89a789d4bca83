"""The supply manager's and administrator's enrolment page: each site's state (active,
enrolment open or closed) with its randomized subjects, the caps and their counts; a site
is closed to or reopened for enrolment here, with a reason. Counts only, never by arm."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path
from fastapi.responses import Response

from app.adapters.api.problems import status_for
from app.adapters.web.core import Page, page
from app.adapters.web.messages import error_message
from app.domain.access import Action
from app.domain.errors import DomainError
from app.services import enrolment

router = APIRouter(prefix="/ui/studies/{study}", include_in_schema=False)
SiteCode = Annotated[str, Path(pattern=r"^[A-Z]{2}[0-9]{2,4}$")]
Reason = Annotated[str, Form(max_length=1000)]


def _page(ctx: Page, status: int = 200, **values: object) -> Response:
    assert ctx.study is not None
    found = enrolment.enrolment_status(ctx.uow(), ctx.principal, ctx.study.slug)
    return ctx.render("enrolment.html", status=status, enrolment=found, **values)


@router.get("/enrolment")
def enrolment_page(
    ctx: Annotated[Page, Depends(page(Action.ENROLMENT_MANAGE))], done: str = ""
) -> Response:
    gettext = ctx.lang.gettext
    notice = {
        "closed": gettext("The site is closed to enrolment."),
        "reopened": gettext("The site is open to enrolment again."),
    }.get(done)
    return _page(ctx, notice=notice)


def _change(ctx: Page, site: str, is_open: bool, reason: str) -> Response:
    assert ctx.study is not None
    try:
        enrolment.set_site_enrolment(
            ctx.uow(), ctx.principal, ctx.study.slug, site, is_open, reason
        )
    except DomainError as exc:
        return _page(ctx, status_for(exc), error=error_message(exc, ctx.lang.gettext))
    return ctx.redirect(f"{ctx.base}/enrolment?done={'reopened' if is_open else 'closed'}")


@router.post("/enrolment/sites/{site}/close")
def close_site(
    ctx: Annotated[Page, Depends(page(Action.ENROLMENT_MANAGE))],
    site: SiteCode,
    reason: Reason = "",
) -> Response:
    return _change(ctx, site, False, reason)


@router.post("/enrolment/sites/{site}/reopen")
def reopen_site(
    ctx: Annotated[Page, Depends(page(Action.ENROLMENT_MANAGE))],
    site: SiteCode,
    reason: Reason = "",
) -> Response:
    return _change(ctx, site, True, reason)
