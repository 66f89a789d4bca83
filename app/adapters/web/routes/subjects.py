"""Subjects at the investigator's and pharmacist's sites: register (or re-screen), randomize
(blinded result, with the study's eligibility questions), the subject's status, dispensing a
visit, and the record's changes: discontinuation, completion, screen failure, stratum
correction. The use cases are the API's."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from app.adapters.api.problems import status_for
from app.adapters.web.core import Page, page
from app.adapters.web.messages import N_, InvalidInput, error_message
from app.domain.access import Action, Principal
from app.domain.errors import DomainError
from app.domain.subjects import SubjectStatus
from app.services import randomization as rnd
from app.services import subjects as subjects_service
from app.services import supply
from app.services.ports import UnitOfWork
from app.services.subjects import SubjectView, subject_status

router = APIRouter(prefix="/ui/studies/{study}", include_in_schema=False)

SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SubjectId = Annotated[str, Path(pattern=SUBJECT_ID.pattern)]
Text = Annotated[str, Form(max_length=2000)]

# The default reasons in words; a reason a study file adds is shown by its code.
REASON_LABELS: dict[str, str] = {
    "adverse_event": N_("Adverse event"),
    "death": N_("Death"),
    "consent_withdrawn": N_("Consent withdrawn"),
    "investigator_decision": N_("Investigator's decision"),
    "lost_to_follow_up": N_("Lost to follow-up"),
    "other": N_("Other (say which below)"),
    "inclusion_criterion_not_met": N_("An inclusion criterion is not met"),
    "exclusion_criterion_met": N_("An exclusion criterion is met"),
    "consent_not_obtained": N_("Consent not obtained"),
}


def _weight(text: str, required: bool) -> Decimal | None:
    cleaned = text.strip().replace(",", ".")
    if not cleaned:
        if required:
            raise InvalidInput("a weight is required")
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidInput("the weight is not a number") from None
    if not value.is_finite() or value <= 0 or value > 500:
        raise InvalidInput("the weight is out of range")
    return value


def _my_sites(ctx: Page) -> list[str]:
    assert ctx.study is not None
    allowed = ctx.principal.sites_in(ctx.study.slug)
    return [s.code for s in ctx.study.sites if allowed is None or s.code in allowed]


def _new_form(ctx: Page, status: int = 200, **values: object) -> Response:
    return ctx.render("subject_new.html", status=status, sites=_my_sites(ctx), **values)


@router.get("/subjects/new")
def new_subject(ctx: Annotated[Page, Depends(page(Action.SUBJECT_REGISTER))]) -> Response:
    return _new_form(ctx, values={})


@router.post("/subjects/new")
async def register(
    request: Request, ctx: Annotated[Page, Depends(page(Action.SUBJECT_REGISTER))]
) -> Response:
    form = await request.form()
    return await _run_register(ctx, form)


async def _run_register(ctx: Page, form: FormData) -> Response:
    assert ctx.study is not None
    subject_id = str(form.get("subject_id", "")).strip()
    site = str(form.get("site", ""))
    rescreen_of = str(form.get("rescreen_of", "")).strip() or None
    strata = {
        f.code: str(form.get(f"stratum_{f.code}", ""))
        for f in ctx.study.factors
        if form.get(f"stratum_{f.code}")
    }
    values = {
        "subject_id": subject_id,
        "site": site,
        "rescreen_of": rescreen_of or "",
        **{f"stratum_{k}": v for k, v in strata.items()},
    }
    try:
        if not SUBJECT_ID.match(subject_id):
            raise InvalidInput("the subject id is not valid")
        if rescreen_of is not None and not SUBJECT_ID.match(rescreen_of):
            raise InvalidInput("the earlier subject id is not valid")
        await run_in_threadpool(
            rnd.register_subject,
            ctx.uow(),
            ctx.principal,
            ctx.study.slug,
            subject_id,
            site,
            strata,
            rescreen_of,
        )
    except DomainError as exc:
        return _new_form(
            ctx, status_for(exc), values=values, error=error_message(exc, ctx.lang.gettext)
        )
    return ctx.redirect(f"{ctx.base}/subjects/{subject_id}?done=registered")


@router.get("/subjects")
def find_subject(
    ctx: Annotated[Page, Depends(page(Action.SUBJECT_READ))], subject_id: str = ""
) -> Response:
    subject_id = subject_id.strip()
    if subject_id and SUBJECT_ID.match(subject_id):
        return ctx.redirect(f"{ctx.base}/subjects/{subject_id}")
    error = None
    if subject_id:
        error = error_message(InvalidInput("bad id"), ctx.lang.gettext)
    return ctx.render(
        "subject_find.html", status=422 if error else 200, error=error, subject_id=subject_id
    )


def _subject_page(ctx: Page, subject_id: str, status: int = 200, **values: object) -> Response:
    assert ctx.study is not None
    try:
        view: SubjectView | None = subject_status(
            ctx.uow(), ctx.principal, ctx.study.slug, subject_id
        )
    except DomainError as exc:
        return ctx.render(
            "subject_find.html",
            status=status_for(exc),
            error=error_message(exc, ctx.lang.gettext),
            subject_id=subject_id,
        )
    assert view is not None
    done = {d.visit for d in view.dispensations}
    return ctx.render(
        "subject.html",
        status=status,
        view=view,
        subject=view.subject,
        registered=view.subject.status is SubjectStatus.REGISTERED,
        randomized=view.subject.status is SubjectStatus.RANDOMIZED,
        screen_failed=view.subject.status is SubjectStatus.SCREEN_FAILED,
        may_randomize=ctx.principal.may(Action.SUBJECT_RANDOMIZE),
        may_end=ctx.principal.may(Action.SUBJECT_END),
        may_correct=ctx.principal.may(Action.SUBJECT_REGISTER),
        reason_labels=REASON_LABELS,
        questions=[(q.code, q.text_in(ctx.lang.locale)) for q in ctx.study.eligibility],
        may_dispense=ctx.principal.may(Action.DISPENSE),
        may_unblind=ctx.principal.may(Action.UNBLIND),
        open_visits=[v for v in ctx.study.visits if v not in done],
        dispensed_visits=[v for v in ctx.study.visits if v in done],
        replacement_reasons=supply.REPLACEMENT_REASONS,
        done=ctx.request.query_params.get("done"),
        **values,
    )


@router.get("/subjects/{subject_id}")
def show_subject(
    ctx: Annotated[Page, Depends(page(Action.SUBJECT_READ))], subject_id: SubjectId
) -> Response:
    return _subject_page(ctx, subject_id)


@router.post("/subjects/{subject_id}/randomization")
async def randomize(
    request: Request,
    ctx: Annotated[Page, Depends(page(Action.SUBJECT_RANDOMIZE))],
    subject_id: SubjectId,
) -> Response:
    assert ctx.study is not None
    form = await request.form()
    # A ticked box answers yes; an unticked one leaves the question unanswered (refused).
    answers = {q.code: True for q in ctx.study.eligibility if form.get(f"eligibility_{q.code}")}
    try:
        weight = _weight(str(form.get("weight_kg", ""))[:2000], required=False)
        await run_in_threadpool(
            rnd.randomize, ctx.uow(), ctx.principal, ctx.study.slug, subject_id, weight, answers
        )
    except DomainError as exc:
        return _subject_page(
            ctx, subject_id, status_for(exc), error=error_message(exc, ctx.lang.gettext)
        )
    return ctx.redirect(f"{ctx.base}/subjects/{subject_id}?done=randomized")


@router.post("/subjects/{subject_id}/dispensations")
def dispense(
    ctx: Annotated[Page, Depends(page(Action.DISPENSE))],
    subject_id: SubjectId,
    visit: Text = "",
    weight_kg: Text = "",
) -> Response:
    def dispense_at_weight(uow: UnitOfWork, principal: Principal, slug: str, sid: str) -> None:
        weight = _weight(weight_kg, required=True)
        assert weight is not None
        supply.record_dispensation(uow, principal, slug, sid, visit, weight)

    return record_change(ctx, subject_id, "dispensed", dispense_at_weight)


@router.post("/subjects/{subject_id}/replacements")
def replace_kit(
    ctx: Annotated[Page, Depends(page(Action.DISPENSE))],
    subject_id: SubjectId,
    visit: Text = "",
    kit_number: Text = "",
    reason: Text = "",
) -> Response:
    """A kit the subject received at a visit was damaged or lost: the use case (the API's)
    hands out a new kit of the same type; the page shows only the new kit's number."""
    assert ctx.study is not None
    values = {"replace_visit": visit, "replace_kit_number": kit_number.strip()[:40]}
    try:
        if reason not in supply.REPLACEMENT_REASONS:
            raise InvalidInput("choose damaged or lost")
        result = supply.replace_kit(
            ctx.uow(), ctx.principal, ctx.study.slug, subject_id, visit, kit_number.strip(), reason
        )
    except DomainError as exc:
        return _subject_page(
            ctx,
            subject_id,
            status_for(exc),
            error=error_message(exc, ctx.lang.gettext),
            values=values,
        )
    return _subject_page(ctx, subject_id, replaced=result)


def record_change(
    ctx: Page, subject_id: str, done: str, change: Callable[..., object], *args: object
) -> Response:
    """Run one of the subject's use cases, `change(uow, principal, study, subject_id, *args)`;
    its refusal is shown on the subject's page, its success redirects there with `done`."""
    assert ctx.study is not None
    try:
        change(ctx.uow(), ctx.principal, ctx.study.slug, subject_id, *args)
    except DomainError as exc:
        return _subject_page(
            ctx, subject_id, status_for(exc), error=error_message(exc, ctx.lang.gettext)
        )
    return ctx.redirect(f"{ctx.base}/subjects/{subject_id}?done={done}")


@router.post("/subjects/{subject_id}/discontinuation")
def discontinue(
    ctx: Annotated[Page, Depends(page(Action.SUBJECT_END))],
    subject_id: SubjectId,
    reason: Text = "",
    detail: Text = "",
) -> Response:
    return record_change(
        ctx, subject_id, "discontinued", subjects_service.discontinue, reason, detail
    )


@router.post("/subjects/{subject_id}/completion")
def complete(
    ctx: Annotated[Page, Depends(page(Action.SUBJECT_END))],
    subject_id: SubjectId,
    detail: Text = "",
) -> Response:
    return record_change(ctx, subject_id, "completed", subjects_service.complete, detail)


@router.post("/subjects/{subject_id}/screen-failure")
def screen_failure(
    ctx: Annotated[Page, Depends(page(Action.SUBJECT_END))],
    subject_id: SubjectId,
    reason: Text = "",
    detail: Text = "",
) -> Response:
    return record_change(
        ctx, subject_id, "screen_failed", subjects_service.screen_fail, reason, detail
    )


@router.post("/subjects/{subject_id}/stratum-correction")
def stratum_correction(
    ctx: Annotated[Page, Depends(page(Action.SUBJECT_REGISTER))],
    subject_id: SubjectId,
    correction: Text = "",
    reason: Text = "",
) -> Response:
    """`correction` is "factor|level": one choice among every level of every factor."""
    factor, _, level = correction.partition("|")
    return record_change(
        ctx,
        subject_id,
        "corrected",
        subjects_service.correct_stratum,
        factor,
        level,
        reason,
    )
