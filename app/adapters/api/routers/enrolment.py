"""Enrolment control: the enrolment status (counts of randomized subjects by study, country,
site and stratum; never by arm), caps, closing and reopening a site's enrolment, and a
site's activation and deactivation. Every POST is audited and idempotent."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.idempotency import IdempotencyRequest, idempotency_request
from app.adapters.api.openapi import problems
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.schemas import Text, examples
from app.bootstrap import Container
from app.domain import enrolment
from app.domain.access import Action, Principal
from app.domain.errors import SiteNotFound
from app.domain.subjects import SiteNotActive
from app.services import enrolment as service
from app.services.resupply import SupplyBusy

router = APIRouter(prefix="/api/v1", tags=["enrolment"], route_class=ThreadPoolRoute)

SiteId = Annotated[str, Path(pattern=r"^[A-Z]{2}[0-9]{2,4}$")]
Idem = Annotated[IdempotencyRequest, Depends(idempotency_request)]
Deps = Annotated[Container, Depends(get_container)]
Reason = Field(min_length=1, max_length=1000)


CAP_EXAMPLE = {
    "scope": "site",
    "target": "FR01",
    "warning_at": 18,
    "cap": 20,
    "randomized": 12,
    "state": "open",
    "set_at": "2026-03-01T08:00:00Z",
    "set_by": "user:supply-lead",
}
SITE_CHANGE_EXAMPLE = {
    "site_id": "FR03",
    "active": True,
    "enrolment_open": True,
    "definition_version": 4,
    "initial_shipment": {"shipment_id": "SH-FR03-001", "status": "shipped", "kit_count": 24},
    "note": None,
}


class CapCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "scope": "site",
                    "target": "FR01",
                    "warning_at": 18,
                    "cap": 20,
                    "reason": "site capacity",
                }
            ]
        },
    )

    scope: Literal["study", "country", "site", "stratum"]
    target: Text = Field(
        default="",
        max_length=128,
        description=(
            'study: ""; country: "FR"; site: "FR01"; stratum: every factor\'s level in the '
            'study\'s order, "shock=yes|age=ge65" (every site), or after a site code, '
            '"FR01|shock=yes|age=ge65" (that site\'s stratum)'
        ),
    )
    warning_at: int | None = Field(default=None, description="randomized subjects; audited once")
    cap: int | None = Field(default=None, description="hard cap on randomized subjects")
    reason: Text | None = Field(default=None, max_length=1000)


class CapRead(BaseModel):
    model_config = examples(CAP_EXAMPLE)

    scope: str
    target: str
    warning_at: int | None
    cap: int | None
    randomized: int
    state: str = Field(description="open, warning, reached; cleared once removed")
    set_at: datetime | None
    set_by: str | None


class ReasonCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "pharmacist on leave"}]}
    )

    reason: Text = Reason


class ActivationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "site initiation visit done"}]}
    )

    reason: Text | None = Field(default=None, max_length=1000)


class ShipmentBrief(BaseModel):
    shipment_id: str
    status: str
    kit_count: int


class SiteChangeRead(BaseModel):
    model_config = examples(SITE_CHANGE_EXAMPLE)

    site_id: str
    active: bool
    enrolment_open: bool
    definition_version: int
    initial_shipment: ShipmentBrief | None = None
    note: str | None = None


class SiteEnrolmentRead(BaseModel):
    site_id: str
    name: str
    country: str
    active: bool
    enrolment_open: bool
    randomized: int


class EnrolmentRead(BaseModel):
    model_config = examples(
        {
            "study": "iris-7a",
            "mode": "live",
            "randomized": 12,
            "by_country": {"FR": 12},
            "by_stratum": {"shock=yes|age=lt65": 7, "shock=no|age=lt65": 5},
            "sites": [
                {
                    "site_id": "FR01",
                    "name": "Hôpital Example",
                    "country": "FR",
                    "active": True,
                    "enrolment_open": True,
                    "randomized": 12,
                }
            ],
            "caps": [CAP_EXAMPLE],
        }
    )

    study: str
    mode: str
    randomized: int = Field(description="subjects ever randomized in the study's mode")
    by_country: dict[str, int]
    by_stratum: dict[str, int] = Field(description='study-wide, e.g. "shock=yes|age=ge65"')
    sites: list[SiteEnrolmentRead]
    caps: list[CapRead]


def cap_read(status: service.CapStatus) -> CapRead:
    cap = status.cap
    return CapRead(
        scope=cap.scope.value,
        target=cap.target,
        warning_at=cap.warning_at,
        cap=cap.cap,
        randomized=status.randomized,
        state=status.state,
        set_at=cap.set_at,
        set_by=cap.set_by,
    )


def site_change_read(change: service.SiteChange) -> SiteChangeRead:
    shipment = change.shipment
    return SiteChangeRead(
        site_id=change.site,
        active=change.active,
        enrolment_open=change.enrolment_open,
        definition_version=change.definition_version,
        initial_shipment=None
        if shipment is None
        else ShipmentBrief(
            shipment_id=shipment.code, status=shipment.status, kit_count=len(shipment.kit_numbers)
        ),
        note=change.note,
    )


def enrolment_read(status: service.EnrolmentStatus) -> EnrolmentRead:
    return EnrolmentRead(
        study=status.study,
        mode=status.mode,
        randomized=status.randomized,
        by_country=dict(status.by_country),
        by_stratum=dict(status.by_stratum),
        sites=[
            SiteEnrolmentRead(
                site_id=s.code,
                name=s.name,
                country=s.country,
                active=s.active,
                enrolment_open=s.enrolment_open,
                randomized=s.randomized,
            )
            for s in status.sites
        ],
        caps=[cap_read(c) for c in status.caps],
    )


def _render_cap(status: service.CapStatus) -> tuple[int, Any]:
    return 200, cap_read(status).model_dump(mode="json")


def _render_site(change: service.SiteChange) -> tuple[int, Any]:
    return 200, site_change_read(change).model_dump(mode="json")


@router.get(
    "/studies/{study}/enrolment",
    response_model=EnrolmentRead,
    summary="Randomized subjects by study, country, site and stratum, sites' state, caps",
    operation_id="get_enrolment",
)
def get_enrolment(
    study: str,
    principal: Annotated[Principal, Depends(require(Action.ENROLMENT_READ))],
    container: Deps,
) -> EnrolmentRead:
    status = service.enrolment_status(container.uow(principal.actor), principal, study)
    return enrolment_read(status)


@router.post(
    "/studies/{study}/enrolment/caps",
    response_model=CapRead,
    summary="Set a warning threshold and a hard cap (both null: clear the cap)",
    operation_id="set_enrolment_cap",
)
@problems(enrolment.InvalidEnrolmentCap, enrolment.EnrolmentCapNotFound, SiteNotFound)
def set_cap(
    study: str,
    body: CapCreate,
    principal: Annotated[Principal, Depends(require(Action.ENROLMENT_MANAGE))],
    container: Deps,
    idem: Idem,
) -> CapRead:
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_cap))
    status = service.set_cap(
        uow, principal, study, body.scope, body.target, body.warning_at, body.cap, body.reason
    )
    return cap_read(status)


def _enrolment(
    container: Container,
    principal: Principal,
    idem: IdempotencyRequest,
    study: str,
    site_id: str,
    is_open: bool,
    reason: str,
) -> SiteChangeRead:
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_site))
    change = service.set_site_enrolment(uow, principal, study, site_id, is_open, reason)
    return site_change_read(change)


@router.post(
    "/studies/{study}/sites/{site_id}/enrolment-closure",
    response_model=SiteChangeRead,
    summary="Close a site to enrolment (its dispensing and resupply go on), with a reason",
    operation_id="close_site_enrolment",
)
@problems(SiteNotFound, enrolment.SiteEnrolmentAlreadyClosed, enrolment.ReasonRequired)
def close_enrolment(
    study: str,
    site_id: SiteId,
    body: ReasonCreate,
    principal: Annotated[Principal, Depends(require(Action.ENROLMENT_MANAGE))],
    container: Deps,
    idem: Idem,
) -> SiteChangeRead:
    return _enrolment(container, principal, idem, study, site_id, False, body.reason)


@router.post(
    "/studies/{study}/sites/{site_id}/enrolment-reopening",
    response_model=SiteChangeRead,
    summary="Reopen a site to enrolment, with a reason",
    operation_id="reopen_site_enrolment",
)
@problems(SiteNotFound, enrolment.SiteEnrolmentAlreadyOpen, enrolment.ReasonRequired)
def reopen_enrolment(
    study: str,
    site_id: SiteId,
    body: ReasonCreate,
    principal: Annotated[Principal, Depends(require(Action.ENROLMENT_MANAGE))],
    container: Deps,
    idem: Idem,
) -> SiteChangeRead:
    return _enrolment(container, principal, idem, study, site_id, True, body.reason)


@router.post(
    "/studies/{study}/sites/{site_id}/activation",
    response_model=SiteChangeRead,
    summary="Activate a site; sends its initial shipment once the kit list exists",
    operation_id="activate_site",
)
@problems(SiteNotFound, enrolment.SiteAlreadyActive, SupplyBusy)
def activate(
    study: str,
    site_id: SiteId,
    principal: Annotated[Principal, Depends(require(Action.SITE_ACTIVATE))],
    container: Deps,
    idem: Idem,
    body: Annotated[ActivationCreate | None, Body()] = None,
) -> SiteChangeRead:
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_site))
    reason = body.reason if body is not None else None
    change = service.set_site_active(uow, principal, study, site_id, True, reason)
    return site_change_read(change)


@router.post(
    "/studies/{study}/sites/{site_id}/deactivation",
    response_model=SiteChangeRead,
    summary="Deactivate a site (no enrolment nor resupply any more), with a reason",
    operation_id="deactivate_site",
)
@problems(SiteNotFound, SiteNotActive, enrolment.ReasonRequired)
def deactivate(
    study: str,
    site_id: SiteId,
    body: ReasonCreate,
    principal: Annotated[Principal, Depends(require(Action.SITE_ACTIVATE))],
    container: Deps,
    idem: Idem,
) -> SiteChangeRead:
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_site))
    change = service.set_site_active(uow, principal, study, site_id, False, body.reason)
    return site_change_read(change)
