"""After the lock: an investigator reads the arm of a subject of its own sites. The use case
(the API's `arm_after_lock`) refuses before the lock and outside the investigator's sites,
and records each read in the audit trail. A POST (with the CSRF token), so a link or a
prefetch never reads an arm; the page is never cached (security headers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from app.adapters.api.problems import status_for
from app.adapters.web.core import Page, page
from app.adapters.web.messages import N_, InvalidInput, error_message
from app.adapters.web.routes.subjects import SUBJECT_ID
from app.domain.access import Action
from app.domain.errors import DomainError
from app.services import blinding

router = APIRouter(prefix="/ui/studies/{study}", include_in_schema=False)
Text = Annotated[str, Form(max_length=200)]

NOT_LOCKED = N_(
    "The study is not locked yet. Arms are shown to investigators only after the study is "
    "locked; until then, use emergency unblinding if the care of a subject needs it."
)


@router.get("/arms")
def arm_form(ctx: Annotated[Page, Depends(page(Action.ARM_READ))]) -> Response:
    return ctx.render("arms.html", subject_id="", result=None)


@router.post("/arms")
def read_arm(
    ctx: Annotated[Page, Depends(page(Action.ARM_READ))], subject_id: Text = ""
) -> Response:
    assert ctx.study is not None
    typed = subject_id.strip()[:64]
    try:
        if not SUBJECT_ID.match(typed):
            raise InvalidInput("the subject id is not valid")
        result = blinding.arm_after_lock(ctx.uow(), ctx.principal, ctx.study.slug, typed)
    except blinding.StudyNotLocked as exc:
        return ctx.render(
            "arms.html",
            status=status_for(exc),
            subject_id=typed,
            result=None,
            error=ctx.lang.gettext(NOT_LOCKED),
        )
    except DomainError as exc:
        return ctx.render(
            "arms.html",
            status=status_for(exc),
            subject_id=typed,
            result=None,
            error=error_message(exc, ctx.lang.gettext),
        )
    return ctx.render("arms.html", subject_id="", result=result)
