"""The pharmacist's and supply manager's pages: kit lookup (the check digit checked as the
number is typed, and again by the use case), inventory by status, shipments and their
receipt, temperature excursions. Blinded throughout: kit numbers and counts, no kit type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.adapters.api.problems import status_for
from app.adapters.web.core import Page, page
from app.adapters.web.messages import error_message
from app.domain.access import Action
from app.domain.errors import DomainError
from app.domain.study import Study
from app.services import supply
from app.services.studies import get_study

router = APIRouter(prefix="/ui/studies/{study}", include_in_schema=False)
Code = Annotated[str, Path(min_length=1, max_length=32)]
Text = Annotated[str, Form(max_length=20000)]
_SPLIT = re.compile(r"[\s,;]+")


def _sites(ctx: Page) -> list[str]:
    assert ctx.study is not None
    allowed = ctx.principal.sites_in(ctx.study.slug)
    return [s.code for s in ctx.study.sites if allowed is None or s.code in allowed]


@router.get("/kits")
def kit_lookup(
    ctx: Annotated[Page, Depends(page(Action.KIT_READ))], kit_number: str = ""
) -> Response:
    assert ctx.study is not None
    typed = kit_number.strip()[:40]
    if not typed:
        return ctx.render("kit.html", kit_number="", kit=None)
    try:
        kit = supply.lookup_kit(ctx.uow(), ctx.principal, ctx.study.slug, typed)
    except DomainError as exc:
        return ctx.render(
            "kit.html",
            status=status_for(exc),
            kit_number=typed,
            kit=None,
            error=error_message(exc, ctx.lang.gettext),
        )
    return ctx.render("kit.html", kit_number=kit.kit_number, kit=kit)


@router.get("/inventory")
def inventory(
    ctx: Annotated[Page, Depends(page(Action.INVENTORY_READ))], site: str = ""
) -> Response:
    assert ctx.study is not None
    sites = _sites(ctx)
    chosen = site if site in sites else (sites[0] if sites else "")
    if not chosen:
        return ctx.render("inventory.html", sites=sites, site="", inventory=None)
    try:
        found = supply.site_inventory(ctx.uow(), ctx.principal, ctx.study.slug, chosen)
        expected = supply.kits_expected_back(ctx.uow(), ctx.principal, ctx.study.slug, chosen)
    except DomainError as exc:
        return ctx.render(
            "inventory.html",
            status=status_for(exc),
            sites=sites,
            site=chosen,
            inventory=None,
            error=error_message(exc, ctx.lang.gettext),
        )
    return ctx.render(
        "inventory.html", sites=sites, site=chosen, inventory=found, expected=expected
    )


@router.get("/shipments")
def shipments(
    ctx: Annotated[Page, Depends(page(Action.SHIPMENT_READ))], site: str = ""
) -> Response:
    assert ctx.study is not None
    sites = _sites(ctx)
    chosen = site if site in sites else None
    try:
        found = supply.list_shipments(ctx.uow(), ctx.principal, ctx.study.slug, chosen)
    except DomainError as exc:
        return ctx.render(
            "shipments.html",
            status=status_for(exc),
            sites=sites,
            site=chosen or "",
            shipments=[],
            error=error_message(exc, ctx.lang.gettext),
        )
    # Waiting shipments first, then by code: an order that says nothing about contents.
    ordered = sorted(found, key=lambda s: (s.status != "in_transit", s.code))
    return ctx.render("shipments.html", sites=sites, site=chosen or "", shipments=ordered)


def _shipment_page(ctx: Page, code: str, status: int = 200, **values: object) -> Response:
    assert ctx.study is not None
    try:
        found = supply.get_shipment(ctx.uow(), ctx.principal, ctx.study.slug, code)
    except DomainError as exc:
        return ctx.render(
            "shipments.html",
            status=status_for(exc),
            sites=_sites(ctx),
            site="",
            shipments=[],
            error=error_message(exc, ctx.lang.gettext),
        )
    return ctx.render(
        "shipment.html",
        status=status,
        shipment=found,
        may_receive=ctx.principal.may(Action.SHIPMENT_RECEIVE) and found.status == "in_transit",
        done=ctx.request.query_params.get("done"),
        **values,
    )


@router.get("/shipments/{code}")
def shipment(ctx: Annotated[Page, Depends(page(Action.SHIPMENT_READ))], code: Code) -> Response:
    return _shipment_page(ctx, code)


@router.post("/shipments/{code}/receipt")
async def receive(
    request: Request,
    ctx: Annotated[Page, Depends(page(Action.SHIPMENT_RECEIVE))],
    code: Code,
) -> Response:
    assert ctx.study is not None
    form = await request.form()
    damaged = [str(v) for v in form.getlist("damaged")][:1000]
    try:
        await run_in_threadpool(
            supply.receive_shipment, ctx.uow(), ctx.principal, ctx.study.slug, code, damaged
        )
    except DomainError as exc:
        return await run_in_threadpool(
            _shipment_page, ctx, code, status_for(exc), error=error_message(exc, ctx.lang.gettext)
        )
    return ctx.redirect(f"{ctx.base}/shipments/{code}?done=received")


@router.get("/excursions/new")
def excursion_form(ctx: Annotated[Page, Depends(page(Action.EXCURSION_REPORT))]) -> Response:
    return ctx.render("excursion_new.html", sites=_sites(ctx), values={})


@router.post("/excursions/new")
def report_excursion(
    ctx: Annotated[Page, Depends(page(Action.EXCURSION_REPORT))],
    site: Text = "",
    shipment_code: Text = "",
    kit_numbers: Text = "",
    description: Text = "",
) -> Response:
    assert ctx.study is not None
    values = {
        "site": site,
        "shipment_code": shipment_code,
        "kit_numbers": kit_numbers,
        "description": description,
    }
    numbers = [n for n in _SPLIT.split(kit_numbers.strip()) if n]
    try:
        if not description.strip():
            raise supply.InvalidSupplyRequest("a description is required")
        result = supply.report_excursion(
            ctx.uow(),
            ctx.principal,
            ctx.study.slug,
            description.strip(),
            site=site or None,
            kit_numbers=numbers or None,
            shipment_code=shipment_code.strip() or None,
        )
    except DomainError as exc:
        return ctx.render(
            "excursion_new.html",
            status=status_for(exc),
            sites=_sites(ctx),
            values=values,
            error=error_message(exc, ctx.lang.gettext),
        )
    return ctx.render("excursion_new.html", sites=_sites(ctx), values={}, reported=result)


@router.get("/excursions")
def excursions(
    ctx: Annotated[Page, Depends(page(Action.INVENTORY_READ))], site: str = ""
) -> Response:
    """The excursions at the caller's sites: open ones first (with a link to the decision for
    the supply manager), then resolved ones; newest first within each."""
    assert ctx.study is not None
    sites = _sites(ctx)
    chosen = site if site in sites else None
    try:
        found = supply.list_excursions(ctx.uow(), ctx.principal, ctx.study.slug, chosen)
    except DomainError as exc:
        return ctx.render(
            "excursions.html",
            status=status_for(exc),
            sites=sites,
            site=chosen or "",
            open=[],
            resolved=[],
            may_resolve=False,
            error=error_message(exc, ctx.lang.gettext),
        )
    return ctx.render(
        "excursions.html",
        sites=sites,
        site=chosen or "",
        open=[e for e in found if e.resolution is None],
        resolved=[e for e in found if e.resolution is not None],
        may_resolve=ctx.principal.may(Action.SUPPLY_MANAGE),
    )


@router.get("/excursions/resolve")
def resolve_form(
    ctx: Annotated[Page, Depends(page(Action.SUPPLY_MANAGE))], excursion_code: str = ""
) -> Response:
    return ctx.render("excursion_resolve.html", values={"excursion_code": excursion_code[:32]})


@router.post("/excursions/resolve")
def resolve_excursion(
    ctx: Annotated[Page, Depends(page(Action.SUPPLY_MANAGE))],
    excursion_code: Text = "",
    decision: Text = "",
    reason: Text = "",
) -> Response:
    assert ctx.study is not None
    values = {"excursion_code": excursion_code, "decision": decision, "reason": reason}
    try:
        if not reason.strip():
            raise supply.InvalidSupplyRequest("a reason is required")
        result = supply.resolve_excursion(
            ctx.uow(),
            ctx.principal,
            ctx.study.slug,
            excursion_code.strip(),
            decision,
            reason.strip(),
        )
    except DomainError as exc:
        return ctx.render(
            "excursion_resolve.html",
            status=status_for(exc),
            values=values,
            error=error_message(exc, ctx.lang.gettext),
        )
    return ctx.render("excursion_resolve.html", values={}, resolved=result)


# --- the resupply settings, blinded ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LevelsView:
    """One set of levels; `number` is its rank among the study's level sets sorted by value,
    never by kit type code, so it says nothing about which type it is."""

    number: int
    initial: int
    trigger: int
    resupply: int


@dataclass(frozen=True, slots=True)
class SupplySettingsView:
    """The study's resupply settings as a blinded supply manager may see them: levels without
    any kit type code or label (one row when every type shares them), and the lot rules."""

    levels: tuple[LevelsView, ...]
    same_for_every_type: bool
    do_not_dispense_days: int
    kits_per_lot: int
    lot_shelf_life_days: int

    @classmethod
    def of(cls, study: Study) -> SupplySettingsView:
        config = study.supply
        values = sorted({(lv.initial, lv.trigger, lv.resupply) for lv in config.levels.values()})
        return cls(
            levels=tuple(LevelsView(n, *v) for n, v in enumerate(values, start=1)),
            same_for_every_type=len(values) <= 1,
            do_not_dispense_days=config.do_not_dispense_days,
            kits_per_lot=config.kits_per_lot,
            lot_shelf_life_days=config.lot_shelf_life_days,
        )


@router.get("/supply-settings")
def supply_settings(ctx: Annotated[Page, Depends(page(Action.SUPPLY_MANAGE))]) -> Response:
    """Read only: the settings come from the study file (changed by loading a new version)."""
    assert ctx.study is not None
    try:
        stored = get_study(ctx.uow(), ctx.study.slug, ctx.principal.studies)
    except DomainError as exc:
        return ctx.render(
            "supply_settings.html",
            status=status_for(exc),
            settings=None,
            error=error_message(exc, ctx.lang.gettext),
        )
    return ctx.render("supply_settings.html", settings=SupplySettingsView.of(stored.study))
