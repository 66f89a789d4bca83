"""The unblinded statistician's pages: list QC with the balance chart, the exports (the
study's list, the pooled allocations) and the study lock. Answers are never cached."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import Response

from app.adapters import exports as csv_exports
from app.adapters.api.problems import status_for
from app.adapters.web.charts import balance_chart, legend
from app.adapters.web.core import Page, page, secured
from app.adapters.web.messages import error_message
from app.domain.access import Action
from app.domain.errors import DomainError
from app.services import blinding
from app.services.lists import list_qc, qc_as_dict
from app.services.studies import list_studies

router = APIRouter(include_in_schema=False)
STUDY = "/ui/studies/{study}"
CSV_TYPE = "text/csv; charset=utf-8"


def _download(text: str, name: str) -> Response:
    return secured(
        Response(
            text,
            media_type=CSV_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    )


@router.get(STUDY + "/lists/qc")
def qc(ctx: Annotated[Page, Depends(page(Action.LIST_READ))]) -> Response:
    assert ctx.study is not None
    _ = ctx.lang.gettext
    try:
        report: dict[str, Any] = qc_as_dict(list_qc(ctx.uow(), ctx.study.slug))
    except DomainError as exc:
        return ctx.render(
            "qc.html", status=status_for(exc), error=error_message(exc, _), report=None
        )
    arms = sorted(report["counts"])
    chart = balance_chart(
        report["strata"],
        arms,
        _("Slots per arm in each stratum"),
        _("One group of bars per stratum, one bar per arm; the table below gives the numbers."),
    )
    return ctx.render("qc.html", report=report, arms=arms, chart=chart, legend=legend(arms))


@router.get(STUDY + "/exports")
def exports(ctx: Annotated[Page, Depends(page(Action.LIST_READ))]) -> Response:
    studies = [s.slug for s in list_studies(ctx.uow(), visible=ctx.principal.studies)]
    return ctx.render(
        "exports.html",
        studies=studies,
        may_pool=ctx.principal.may(Action.POOLED_EXPORT),
    )


@router.get(STUDY + "/exports/randomization-list.csv")
def list_csv(ctx: Annotated[Page, Depends(page(Action.LIST_READ))]) -> Response:
    assert ctx.study is not None
    try:
        export = blinding.export_list(ctx.uow(), ctx.principal, ctx.study.slug, "csv")
    except DomainError as exc:
        return ctx.render(
            "exports.html",
            status=status_for(exc),
            error=error_message(exc, ctx.lang.gettext),
            studies=[],
            may_pool=False,
        )
    text = csv_exports.list_csv(export.lines)
    return _download(text, f"{export.study}-{export.mode}-v{export.version}-randomization-list.csv")


@router.get(STUDY + "/exports/pooled.csv")
def pooled_csv(
    ctx: Annotated[Page, Depends(page(Action.POOLED_EXPORT))],
    studies: Annotated[list[str], Query(max_length=20)],
) -> Response:
    try:
        rows = blinding.pooled_allocations(ctx.uow(), ctx.principal, studies)
    except DomainError as exc:
        return ctx.render(
            "exports.html",
            status=status_for(exc),
            error=error_message(exc, ctx.lang.gettext),
            studies=[],
            may_pool=False,
        )
    text = csv_exports.pooled_csv(rows)
    return _download(text, "pooled-allocations.csv")


@router.get(STUDY + "/lock")
def lock_form(ctx: Annotated[Page, Depends(page(Action.STUDY_LOCK))]) -> Response:
    return ctx.render("lock.html")


@router.post(STUDY + "/lock")
def lock(
    ctx: Annotated[Page, Depends(page(Action.STUDY_LOCK))],
    reason: Annotated[str, Form(max_length=blinding.MAX_REASON)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    assert ctx.study is not None
    _ = ctx.lang.gettext
    if confirm != "yes":
        return ctx.render(
            "lock.html",
            status=422,
            reason=reason,
            error=_("Tick the box to confirm that the lock cannot be undone."),
        )
    try:
        result = blinding.lock_study(ctx.uow(), ctx.principal, ctx.study.slug, reason)
    except DomainError as exc:
        return ctx.render(
            "lock.html", status=status_for(exc), reason=reason, error=error_message(exc, _)
        )
    return ctx.render("lock.html", locked=result)
