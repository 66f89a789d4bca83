"""Kits, inventory, shipments, dispensing and temperature excursions.

Blinded throughout: counts and kit numbers, never a kit type (no model here has a field that
could hold one). A site role sees only its sites; another site's kit, inventory or shipment
is simply not found.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.idempotency import IdempotencyRequest, idempotency_request
from app.adapters.api.routing import ThreadPoolRoute
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.services import supply
from app.services.ports import ExcursionRecord, KitRecord, ShipmentRecord

router = APIRouter(prefix="/api/v1", tags=["supply"], route_class=ThreadPoolRoute)

Deps = Annotated[Container, Depends(get_container)]
Idem = Annotated[IdempotencyRequest, Depends(idempotency_request)]
SubjectId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Code = Annotated[str, Path(min_length=1, max_length=32)]
TypedKitNumber = Annotated[str, Field(min_length=1, max_length=40)]


# --- requests ------------------------------------------------------------------------------


class DispensationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visit: str = Field(min_length=1, max_length=32)
    weight_kg: Decimal = Field(
        allow_inf_nan=False,
        description="outside every weight band of the study: 422 weight_out_of_range",
    )


class ReplacementCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kit_number: TypedKitNumber = Field(description="the kit dispensed at the visit")
    reason: Literal["damaged", "lost"]


class ReceiptCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    damaged_kit_numbers: list[TypedKitNumber] = Field(default_factory=list, max_length=1000)


class ExcursionCreate(BaseModel):
    """Either `site_id` with `kit_numbers`, or `shipment_id` (all its kits)."""

    model_config = ConfigDict(extra="forbid")

    site_id: str | None = Field(default=None, min_length=1, max_length=32)
    kit_numbers: list[TypedKitNumber] | None = Field(default=None, min_length=1, max_length=1000)
    shipment_id: str | None = Field(default=None, min_length=1, max_length=32)
    description: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _kits_or_shipment(self) -> Self:
        if (self.kit_numbers is None) == (self.shipment_id is None):
            raise ValueError("give either kit_numbers (with site_id) or shipment_id")
        if self.kit_numbers is not None and self.site_id is None:
            raise ValueError("kit_numbers need the site_id where the kits are")
        return self


class ExcursionResolutionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["release", "reject"]
    reason: str = Field(min_length=1, max_length=2000)


# --- responses -----------------------------------------------------------------------------


class DispensedKitRead(BaseModel):
    kit_number: str
    lot: str
    expiry: date


class DispensationRead(BaseModel):
    subject_id: str
    visit: str
    kits: list[DispensedKitRead]
    dispensed_at: datetime


class ReplacementRead(BaseModel):
    subject_id: str
    visit: str
    replaced_kit_number: str
    reason: str
    kit: DispensedKitRead
    replaced_at: datetime


class KitRead(BaseModel):
    kit_number: str
    status: str
    site_id: str | None
    depot_id: str | None
    subject_id: str | None
    visit: str | None
    lot: str
    expiry: date


class InventoryRead(BaseModel):
    site_id: str
    counts: dict[str, int]


class ExpectedKitRead(BaseModel):
    kit_number: str
    subject_id: str
    visit: str
    dispensed_at: datetime
    discontinued_at: datetime


class ExpectedBackList(BaseModel):
    site_id: str
    kits: list[ExpectedKitRead]


class ShipmentRead(BaseModel):
    shipment_id: str
    kind: str
    status: str
    site_id: str
    depot_id: str
    created_at: datetime
    received_at: datetime | None
    kit_count: int
    kit_numbers: list[str]


class ShipmentList(BaseModel):
    shipments: list[ShipmentRead]


class ExcursionRead(BaseModel):
    excursion_id: str
    status: str  # open | released | rejected
    site_id: str | None
    shipment_id: str | None
    description: str
    reported_at: datetime
    resolved_at: datetime | None
    kit_numbers: list[str]


def _dispensed_kit(k: supply.DispensedKit) -> DispensedKitRead:
    return DispensedKitRead(kit_number=k.kit_number, lot=k.lot, expiry=k.expiry_date)


def dispensation_read(d: supply.Dispensation) -> DispensationRead:
    return DispensationRead(
        subject_id=d.subject_id,
        visit=d.visit,
        kits=[_dispensed_kit(k) for k in d.kits],
        dispensed_at=d.dispensed_at,
    )


def _replacement_read(r: supply.Replacement) -> ReplacementRead:
    return ReplacementRead(
        subject_id=r.subject_id,
        visit=r.visit,
        replaced_kit_number=r.replaced_kit_number,
        reason=r.reason,
        kit=_dispensed_kit(r.kit),
        replaced_at=r.replaced_at,
    )


def _kit_read(k: KitRecord) -> KitRead:
    return KitRead(
        kit_number=k.kit_number,
        status=k.status.value,
        site_id=k.site,
        depot_id=k.depot,
        subject_id=k.subject_id,
        visit=k.visit,
        lot=k.lot,
        expiry=k.expiry_date,
    )


def _shipment_read(s: ShipmentRecord) -> ShipmentRead:
    return ShipmentRead(
        shipment_id=s.code,
        kind=s.kind,
        status=s.status,
        site_id=s.site,
        depot_id=s.depot,
        created_at=s.created_at,
        received_at=s.received_at,
        kit_count=len(s.kit_numbers),
        kit_numbers=list(s.kit_numbers),
    )


def _excursion_read(e: ExcursionRecord) -> ExcursionRead:
    return ExcursionRead(
        excursion_id=e.code,
        status=e.resolution or "open",
        site_id=e.site,
        shipment_id=e.shipment,
        description=e.description,
        reported_at=e.reported_at,
        resolved_at=e.resolved_at,
        kit_numbers=list(e.kit_numbers),
    )


def _render(status: int, read: Any) -> Any:
    def render(result: Any) -> tuple[int, Any]:
        return status, read(result).model_dump(mode="json")

    return render


# --- dispensing ----------------------------------------------------------------------------


@router.post(
    "/studies/{study}/subjects/{subject_id}/dispensations",
    status_code=201,
    response_model=DispensationRead,
)
def dispense(
    study: str,
    subject_id: SubjectId,
    body: DispensationCreate,
    principal: Annotated[Principal, Depends(require(Action.DISPENSE))],
    container: Deps,
    idem: Idem,
) -> DispensationRead:
    """Dispense the visit's kits: type from arm x visit, quantity from the weight band."""
    uow = container.uow(
        principal.actor, idempotency=idem.guard(principal, _render(201, dispensation_read))
    )
    result = supply.record_dispensation(
        uow, principal, study, subject_id, body.visit, body.weight_kg
    )
    return dispensation_read(result)


@router.post(
    "/studies/{study}/subjects/{subject_id}/dispensations/{visit}/replacements",
    status_code=201,
    response_model=ReplacementRead,
)
def replace_kit(
    study: str,
    subject_id: SubjectId,
    visit: Code,
    body: ReplacementCreate,
    principal: Annotated[Principal, Depends(require(Action.DISPENSE))],
    container: Deps,
    idem: Idem,
) -> ReplacementRead:
    """Replace a kit dispensed at the visit that was damaged or lost (same type, audited)."""
    uow = container.uow(
        principal.actor, idempotency=idem.guard(principal, _render(201, _replacement_read))
    )
    result = supply.replace_kit(
        uow, principal, study, subject_id, visit, body.kit_number, body.reason
    )
    return _replacement_read(result)


# --- kits and inventory --------------------------------------------------------------------


@router.get("/studies/{study}/kits/{kit_number}", response_model=KitRead)
def get_kit(
    study: str,
    kit_number: Annotated[str, Path(max_length=40)],
    principal: Annotated[Principal, Depends(require(Action.KIT_READ))],
    container: Deps,
) -> KitRead:
    """A kit's blinded record; a mistyped number (check digit) is refused."""
    return _kit_read(
        supply.lookup_kit(container.uow(principal.actor), principal, study, kit_number)
    )


@router.get("/studies/{study}/sites/{site_id}/inventory", response_model=InventoryRead)
def get_inventory(
    study: str,
    site_id: Code,
    principal: Annotated[Principal, Depends(require(Action.INVENTORY_READ))],
    container: Deps,
) -> InventoryRead:
    """A site's kits counted by status; never by type."""
    inventory = supply.site_inventory(container.uow(principal.actor), principal, study, site_id)
    return InventoryRead(site_id=inventory.site, counts=dict(inventory.counts))


@router.get(
    "/studies/{study}/sites/{site_id}/kits-expected-back",
    response_model=ExpectedBackList,
    summary="Kits the site's discontinued subjects are expected to bring back",
)
def get_kits_expected_back(
    study: str,
    site_id: Code,
    principal: Annotated[Principal, Depends(require(Action.INVENTORY_READ))],
    container: Deps,
) -> ExpectedBackList:
    """For each discontinued subject, the kits of their last dispensation before the
    discontinuation still recorded as dispensed; blinded (never a kit type)."""
    owed = supply.kits_expected_back(container.uow(principal.actor), principal, study, site_id)
    return ExpectedBackList(
        site_id=site_id,
        kits=[
            ExpectedKitRead(
                kit_number=k.kit_number,
                subject_id=k.subject_id,
                visit=k.visit,
                dispensed_at=k.dispensed_at,
                discontinued_at=k.discontinued_at,
            )
            for k in owed
        ],
    )


# --- shipments -----------------------------------------------------------------------------


@router.get("/studies/{study}/shipments", response_model=ShipmentList)
def list_shipments(
    study: str,
    principal: Annotated[Principal, Depends(require(Action.SHIPMENT_READ))],
    container: Deps,
    site_id: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> ShipmentList:
    """Shipments to one site, or to every site the caller may see."""
    found = supply.list_shipments(container.uow(principal.actor), principal, study, site_id)
    return ShipmentList(shipments=[_shipment_read(s) for s in found])


@router.get("/studies/{study}/shipments/{shipment_id}", response_model=ShipmentRead)
def get_shipment(
    study: str,
    shipment_id: Code,
    principal: Annotated[Principal, Depends(require(Action.SHIPMENT_READ))],
    container: Deps,
) -> ShipmentRead:
    return _shipment_read(
        supply.get_shipment(container.uow(principal.actor), principal, study, shipment_id)
    )


@router.post("/studies/{study}/shipments/{shipment_id}/receipt", response_model=ShipmentRead)
def receive_shipment(
    study: str,
    shipment_id: Code,
    principal: Annotated[Principal, Depends(require(Action.SHIPMENT_RECEIVE))],
    container: Deps,
    idem: Idem,
    body: Annotated[ReceiptCreate | None, Body()] = None,
) -> ShipmentRead:
    """Confirm the shipment's arrival; its kits become usable, except those named damaged."""
    uow = container.uow(
        principal.actor, idempotency=idem.guard(principal, _render(200, _shipment_read))
    )
    damaged = body.damaged_kit_numbers if body is not None else []
    return _shipment_read(supply.receive_shipment(uow, principal, study, shipment_id, damaged))


# --- temperature excursions ----------------------------------------------------------------


@router.post("/studies/{study}/excursions", status_code=201, response_model=ExcursionRead)
def report_excursion(
    study: str,
    body: ExcursionCreate,
    principal: Annotated[Principal, Depends(require(Action.EXCURSION_REPORT))],
    container: Deps,
    idem: Idem,
) -> ExcursionRead:
    """Quarantine the kits of a temperature excursion until the supply manager decides."""
    uow = container.uow(
        principal.actor, idempotency=idem.guard(principal, _render(201, _excursion_read))
    )
    result = supply.report_excursion(
        uow,
        principal,
        study,
        body.description,
        site=body.site_id,
        kit_numbers=body.kit_numbers,
        shipment_code=body.shipment_id,
    )
    return _excursion_read(result)


@router.post("/studies/{study}/excursions/{excursion_id}/resolution", response_model=ExcursionRead)
def resolve_excursion(
    study: str,
    excursion_id: Code,
    body: ExcursionResolutionCreate,
    principal: Annotated[Principal, Depends(require(Action.SUPPLY_MANAGE))],
    container: Deps,
    idem: Idem,
) -> ExcursionRead:
    """Release the quarantined kits back where they were, or reject them (destroyed)."""
    uow = container.uow(
        principal.actor, idempotency=idem.guard(principal, _render(200, _excursion_read))
    )
    result = supply.resolve_excursion(
        uow, principal, study, excursion_id, body.decision, body.reason
    )
    return _excursion_read(result)
