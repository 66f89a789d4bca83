"""Emergency unblinding: the password and a TOTP code are asked again right before the arm
is shown, then the use case (the API's) checks the study's policy, the caller's scope and
the freshness of that confirmation, records the unblinding and shows the arm to this user
only, on a page that is never cached."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from app.adapters.api.problems import status_for
from app.adapters.web.core import Page, page, session_hash
from app.adapters.web.messages import error_message
from app.domain.access import Action
from app.domain.clients import Throttled
from app.domain.errors import DomainError
from app.domain.users import LoginFailed, SessionInvalid
from app.services import blinding
from app.services import users as user_service

router = APIRouter(prefix="/ui/studies/{study}", include_in_schema=False)
Text = Annotated[str, Form(max_length=blinding.MAX_REASON)]


@router.get("/unblinding")
def unblinding_form(
    ctx: Annotated[Page, Depends(page(Action.UNBLIND))], subject_id: str = ""
) -> Response:
    return ctx.render("unblinding.html", subject_id=subject_id[:64])


@router.post("/unblinding")
def unblind(
    ctx: Annotated[Page, Depends(page(Action.UNBLIND))],
    subject_id: Text = "",
    reason: Text = "",
    password: Text = "",
    code: Text = "",
) -> Response:
    assert ctx.study is not None
    _ = ctx.lang.gettext
    values = {"subject_id": subject_id[:64], "reason": reason}
    hashed = session_hash(ctx.request)
    assert hashed is not None
    try:
        session = user_service.confirm_factors(
            ctx.uow(),
            ctx.container.hasher,
            ctx.config.factor,
            hashed,
            password=password,
            code=code,
            now=ctx.now,
        )
    except (LoginFailed, Throttled) as exc:
        status = 429 if isinstance(exc, Throttled) else 401
        return ctx.render("unblinding.html", status=status, error=error_message(exc, _), **values)
    except SessionInvalid:
        return ctx.redirect("/ui/login?expired=1")
    principal = user_service.principal_of(ctx.user, session)
    uow = ctx.container.uow(principal.actor)
    refusals = ctx.container.uow(principal.actor)
    try:
        result = blinding.unblind(
            uow, refusals, principal, ctx.study.slug, subject_id.strip(), reason, now=ctx.now
        )
    except DomainError as exc:
        return ctx.render(
            "unblinding.html", status=status_for(exc), error=error_message(exc, _), **values
        )
    return ctx.render("unblinded.html", result=result)
