"""Kits, inventory, shipments, dispensing and temperature excursions.

Blinded throughout: counts and kit numbers, never a kit type (no model here has a field that
could hold one). A site role sees only its sites; another site's kit, inventory or shipment
is simply not found.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.idempotency import IdempotencyRequest, idempotency_request
from app.adapters.api.openapi import problems
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.schemas import (
    KIT_EXAMPLE,
    DispensationRead,
    DispensedKitRead,
    Text,
    WeightKg,
    examples,
)
from app.bootstrap import Container
from app.domain import dispensing, kits, subjects
from app.domain.access import Action, Principal
from app.domain.errors import Conflict, SiteNotFound
from app.services import blinding, supply
from app.services.ports import ExcursionRecord, KitRecord, ShipmentRecord

router = APIRouter(prefix="/api/v1", tags=["supply"], route_class=ThreadPoolRoute)

Deps = Annotated[Container, Depends(get_container)]
Idem = Annotated[IdempotencyRequest, Depends(idempotency_request)]
SubjectId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Code = Annotated[str, Path(min_length=1, max_length=32)]
TypedKitNumber = Annotated[str, Field(min_length=1, max_length=40)]


# --- requests ------------------------------------------------------------------------------


class DispensationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"visit": "D4", "weight_kg": 71.5}]}
    )

    visit: Text = Field(min_length=1, max_length=32)
    weight_kg: WeightKg = Field(
        description="outside every weight band of the study: 422 weight_out_of_range",
    )


class ReplacementCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"kit_number": "48210372", "reason": "damaged"}]},
    )

    kit_number: TypedKitNumber = Field(description="the kit dispensed at the visit")
    reason: Literal["damaged", "lost"]


class ReceiptCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"damaged_kit_numbers": ["59301129"]}]}
    )

    damaged_kit_numbers: list[TypedKitNumber] = Field(default_factory=list, max_length=1000)


class ExcursionCreate(BaseModel):
    """Either `site_id` with `kit_numbers`, or `shipment_id` (all its kits)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "site_id": "FR01",
                    "kit_numbers": ["48210372", "48210452"],
                    "description": "fridge at 11 °C for 3 hours overnight",
                },
                {"shipment_id": "SH-FR01-002", "description": "logger shows 31 °C in transit"},
            ]
        },
    )

    site_id: Text | None = Field(default=None, min_length=1, max_length=32)
    kit_numbers: list[TypedKitNumber] | None = Field(default=None, min_length=1, max_length=1000)
    shipment_id: Text | None = Field(default=None, min_length=1, max_length=32)
    description: Text = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _kits_or_shipment(self) -> Self:
        if (self.kit_numbers is None) == (self.shipment_id is None):
            raise ValueError("give either kit_numbers (with site_id) or shipment_id")
        if self.kit_numbers is not None and self.site_id is None:
            raise ValueError("kit_numbers need the site_id where the kits are")
        return self


class ExcursionResolutionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"decision": "release", "reason": "stability data cover 3 h at 11 °C"}]
        },
    )

    decision: Literal["release", "reject"]
    reason: Text = Field(min_length=1, max_length=2000)


# --- responses -----------------------------------------------------------------------------


SHIPMENT_EXAMPLE = {
    "shipment_id": "SH-FR01-001",
    "kind": "initial",
    "status": "received",
    "site_id": "FR01",
    "depot_id": "FR_DEPOT",
    "created_at": "2026-02-20T07:00:00Z",
    "received_at": "2026-02-23T14:31:09Z",
    "kit_count": 2,
    "kit_numbers": ["48210372", "48210452"],
}
EXCURSION_EXAMPLE = {
    "excursion_id": "EX-3F9A1C27B0",
    "status": "open",
    "site_id": "FR01",
    "shipment_id": None,
    "description": "fridge at 11 °C for 3 hours overnight",
    "reported_at": "2026-03-10T06:45:00Z",
    "resolved_at": None,
    "kit_numbers": ["48210372", "48210452"],
}


class ReplacementRead(BaseModel):
    model_config = examples(
        {
            "subject_id": "FR01-001",
            "visit": "D4",
            "replaced_kit_number": "48210372",
            "reason": "damaged",
            "kit": {**KIT_EXAMPLE, "kit_number": "59301129"},
            "replaced_at": "2026-03-05T09:40:02Z",
        }
    )

    subject_id: str
    visit: str
    replaced_kit_number: str
    reason: str
    kit: DispensedKitRead
    replaced_at: datetime


class KitRead(BaseModel):
    """A kit's blinded record."""

    model_config = examples(
        {
            **KIT_EXAMPLE,
            "status": "dispensed",
            "site_id": "FR01",
            "depot_id": None,
            "subject_id": "FR01-001",
            "visit": "D4",
        }
    )

    kit_number: str
    status: str
    site_id: str | None
    depot_id: str | None
    subject_id: str | None
    visit: str | None
    lot: str
    expiry: date


class InventoryRead(BaseModel):
    model_config = examples(
        {"site_id": "FR01", "counts": {"available": 14, "dispensed": 6, "quarantined": 2}}
    )

    site_id: str
    counts: dict[str, int]


class ExpectedKitRead(BaseModel):
    kit_number: str
    subject_id: str
    visit: str
    dispensed_at: datetime
    discontinued_at: datetime


class ExpectedBackList(BaseModel):
    model_config = examples(
        {
            "site_id": "FR01",
            "kits": [
                {
                    "kit_number": "48210372",
                    "subject_id": "FR01-001",
                    "visit": "D4",
                    "dispensed_at": "2026-03-05T09:12:44Z",
                    "discontinued_at": "2026-03-06T16:00:00Z",
                }
            ],
        }
    )

    site_id: str
    kits: list[ExpectedKitRead]


class ShipmentRead(BaseModel):
    model_config = examples(SHIPMENT_EXAMPLE)

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
    model_config = examples({"shipments": [SHIPMENT_EXAMPLE]})

    shipments: list[ShipmentRead]


class ExcursionRead(BaseModel):
    model_config = examples(EXCURSION_EXAMPLE)

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
    operation_id="dispense_visit",
    summary="Dispense a scheduled visit's kits for the subject's weight",
)
@problems(
    subjects.SubjectNotFound,
    subjects.SubjectNotRandomized,
    subjects.SubjectNotOnTreatment,
    dispensing.VisitNotAllowed,
    dispensing.VisitAlreadyDispensed,
    dispensing.VisitAlreadyRecorded,
    dispensing.InsufficientSupply,
    dispensing.WeightOutOfRange,
    blinding.StudyLocked,
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
    operation_id="replace_kit",
    summary="Replace a dispensed kit that was damaged or lost",
)
@problems(
    subjects.SubjectNotFound,
    subjects.SubjectNotRandomized,
    subjects.SubjectNotOnTreatment,
    supply.VisitNotDispensed,
    supply.KitNotDispensedAtVisit,
    kits.InvalidKitNumber,
    kits.InvalidKitTransition,
    dispensing.InsufficientSupply,
    supply.InvalidSupplyRequest,
    blinding.StudyLocked,
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


@router.get(
    "/studies/{study}/kits/{kit_number}",
    response_model=KitRead,
    operation_id="lookup_kit",
    summary="A kit's blinded record, by its number",
)
@problems(kits.InvalidKitNumber, supply.KitNotFound)
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


@router.get(
    "/studies/{study}/sites/{site_id}/inventory",
    response_model=InventoryRead,
    operation_id="get_site_inventory",
    summary="A site's kits counted by status",
)
@problems(SiteNotFound)
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
    operation_id="list_kits_expected_back",
)
@problems(SiteNotFound)
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


@router.get(
    "/studies/{study}/shipments",
    response_model=ShipmentList,
    operation_id="list_shipments",
    summary="Shipments to a site, or to every site the caller sees",
)
@problems(SiteNotFound)
def list_shipments(
    study: str,
    principal: Annotated[Principal, Depends(require(Action.SHIPMENT_READ))],
    container: Deps,
    site_id: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> ShipmentList:
    """Shipments to one site, or to every site the caller may see."""
    found = supply.list_shipments(container.uow(principal.actor), principal, study, site_id)
    return ShipmentList(shipments=[_shipment_read(s) for s in found])


@router.get(
    "/studies/{study}/shipments/{shipment_id}",
    response_model=ShipmentRead,
    operation_id="get_shipment",
    summary="A shipment with its kit numbers",
)
@problems(supply.ShipmentNotFound)
def get_shipment(
    study: str,
    shipment_id: Code,
    principal: Annotated[Principal, Depends(require(Action.SHIPMENT_READ))],
    container: Deps,
) -> ShipmentRead:
    return _shipment_read(
        supply.get_shipment(container.uow(principal.actor), principal, study, shipment_id)
    )


@router.post(
    "/studies/{study}/shipments/{shipment_id}/receipt",
    response_model=ShipmentRead,
    operation_id="receive_shipment",
    summary="Confirm a shipment's arrival, naming any damaged kits",
)
@problems(
    supply.ShipmentNotFound,
    supply.ShipmentAlreadyReceived,
    supply.KitNotInShipment,
    kits.InvalidKitNumber,
    kits.InvalidKitTransition,
    Conflict,
)
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


@router.post(
    "/studies/{study}/excursions",
    status_code=201,
    response_model=ExcursionRead,
    operation_id="report_excursion",
    summary="Report a temperature excursion; its kits are quarantined",
)
@problems(
    SiteNotFound,
    supply.ShipmentNotFound,
    supply.KitNotFound,
    kits.InvalidKitNumber,
    kits.InvalidKitTransition,
    supply.NoKitToQuarantine,
    supply.InvalidSupplyRequest,
    Conflict,
)
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


@router.post(
    "/studies/{study}/excursions/{excursion_id}/resolution",
    response_model=ExcursionRead,
    operation_id="resolve_excursion",
    summary="Release or reject an excursion's quarantined kits",
)
@problems(
    supply.ExcursionNotFound,
    supply.ExcursionAlreadyResolved,
    kits.InvalidKitTransition,
    supply.InvalidSupplyRequest,
)
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
