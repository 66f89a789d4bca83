"""Visits off the happy path: a visit recorded missed or held, an unscheduled dispensation,
and a site's due view (app.services.visits). Blinded: no arm, no kit type, and windows as
the site's local dates."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.idempotency import IdempotencyRequest, idempotency_request
from app.adapters.api.openapi import problems
from app.adapters.api.routers.supply import dispensation_read
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.schemas import DispensationRead, Text, WeightKg, examples
from app.bootstrap import Container
from app.domain import dispensing, subjects
from app.domain.access import Action, Principal
from app.domain.errors import SiteNotFound
from app.domain.schedule import ScheduledVisit, UnscheduledNotAllowed, VisitKind
from app.services import blinding
from app.services import visits as visits_service
from app.services.supply import Dispensation

router = APIRouter(prefix="/api/v1", tags=["visits"], route_class=ThreadPoolRoute)

Deps = Annotated[Container, Depends(get_container)]
Idem = Annotated[IdempotencyRequest, Depends(idempotency_request)]
SubjectId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
VisitCode = Annotated[str, Path(pattern=r"^[A-Za-z0-9_]{1,32}$")]
SiteCode = Annotated[str, Path(pattern=r"^[A-Z]{2}[0-9]{2,4}$")]
Reason = Annotated[
    Text,
    Field(min_length=1, max_length=visits_service.MAX_REASON, pattern=r"\S"),
]


class VisitEventCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "subject in intensive care"}]}
    )

    reason: Reason = Field(description="why the visit was missed or the dose held (required)")


class UnscheduledCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "kit dropped at home", "weight_kg": 71.5}]},
    )

    reason: Reason = Field(description="why kits are needed outside the schedule (required)")
    weight_kg: WeightKg = Field(
        description="outside every weight band of the study: 422 weight_out_of_range",
    )


class VisitEventRead(BaseModel):
    model_config = examples(
        {
            "subject_id": "FR01-001",
            "visit": "D8",
            "status": "missed",
            "reason": "subject in intensive care",
            "recorded_at": "2026-03-09T17:20:00Z",
        }
    )

    subject_id: str
    visit: str
    status: str  # missed | held
    reason: str
    recorded_at: datetime


class ScheduledVisitRead(BaseModel):
    visit: str
    day: int
    opens_date: date
    closes_date: date
    status: str  # dispensed | missed | held | due | upcoming | closed


class DueRead(BaseModel):
    subject_id: str
    visit: ScheduledVisitRead | None
    overdue: bool
    overdue_visits: list[str]


class SiteDueRead(BaseModel):
    model_config = examples(
        {
            "site_id": "FR01",
            "timezone": "Europe/Paris",
            "on": "2026-03-05",
            "subjects": [
                {
                    "subject_id": "FR01-001",
                    "visit": {
                        "visit": "D4",
                        "day": 4,
                        "opens_date": "2026-03-04",
                        "closes_date": "2026-03-06",
                        "status": "due",
                    },
                    "overdue": False,
                    "overdue_visits": [],
                }
            ],
        }
    )

    site_id: str
    timezone: str
    on: date
    subjects: list[DueRead]


def scheduled_visit_read(v: ScheduledVisit) -> ScheduledVisitRead:
    return ScheduledVisitRead(
        visit=v.code,
        day=v.day,
        opens_date=v.opens_date,
        closes_date=v.closes_date,
        status=v.status.value,
    )


def _event_read(r: visits_service.RecordedVisit) -> VisitEventRead:
    return VisitEventRead(
        subject_id=r.subject_id,
        visit=r.visit,
        status=r.kind.value,
        reason=r.reason,
        recorded_at=r.recorded_at,
    )


def _render_event(r: visits_service.RecordedVisit) -> tuple[int, Any]:
    return 201, _event_read(r).model_dump(mode="json")


def _render_dispensation(d: Dispensation) -> tuple[int, Any]:
    return 201, dispensation_read(d).model_dump(mode="json")


_RECORD_DOC = """Once a visit, from its window's first (site-local) day on, late included. Refusals:
409 visit_already_dispensed, visit_already_recorded, visit_not_allowed (unknown visit, or
its window not open yet), subject_not_on_treatment (completed or discontinued),
subject_not_randomized; 404 subject_not_found. A later visit is then dispensable in its own
window."""


_RECORD_PROBLEMS = (
    subjects.SubjectNotFound,
    subjects.SubjectNotRandomized,
    subjects.SubjectNotOnTreatment,
    dispensing.VisitNotAllowed,
    dispensing.VisitAlreadyDispensed,
    dispensing.VisitAlreadyRecorded,
    visits_service.InvalidVisitReason,
    blinding.StudyLocked,
)


def _record(
    kind: VisitKind,
    study: str,
    subject_id: str,
    visit: str,
    body: VisitEventCreate,
    principal: Principal,
    container: Container,
    idem: IdempotencyRequest,
) -> VisitEventRead:
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_event))
    result = visits_service.record_visit(
        uow, principal, study, subject_id, visit, kind, body.reason
    )
    return _event_read(result)


@router.post(
    "/studies/{study}/subjects/{subject_id}/visits/{visit}/missed",
    status_code=201,
    response_model=VisitEventRead,
    summary="Record that the subject missed a visit, with a reason",
    description=_RECORD_DOC,
    operation_id="record_missed_visit",
)
@problems(*_RECORD_PROBLEMS)
def record_missed(
    study: str,
    subject_id: SubjectId,
    visit: VisitCode,
    body: VisitEventCreate,
    principal: Annotated[Principal, Depends(require(Action.VISIT_RECORD))],
    container: Deps,
    idem: Idem,
) -> VisitEventRead:
    return _record(VisitKind.MISSED, study, subject_id, visit, body, principal, container, idem)


@router.post(
    "/studies/{study}/subjects/{subject_id}/visits/{visit}/held",
    status_code=201,
    response_model=VisitEventRead,
    summary="Record that the subject came but the visit's dose was held, with a reason",
    description=_RECORD_DOC,
    operation_id="record_held_dose",
)
@problems(*_RECORD_PROBLEMS)
def record_held(
    study: str,
    subject_id: SubjectId,
    visit: VisitCode,
    body: VisitEventCreate,
    principal: Annotated[Principal, Depends(require(Action.VISIT_RECORD))],
    container: Deps,
    idem: Idem,
) -> VisitEventRead:
    return _record(VisitKind.HELD, study, subject_id, visit, body, principal, container, idem)


@router.post(
    "/studies/{study}/subjects/{subject_id}/unscheduled-dispensations",
    status_code=201,
    response_model=DispensationRead,
    summary="Dispense kits outside the schedule, by the study's rule (visit U1, U2, ...)",
    description=(
        "Where the study file's [unscheduled] section allows it: the kit type of the subject's "
        "arm at the latest scheduled visit dispensed, the weight band's quantity. Refusals: "
        "409 unscheduled_not_allowed (not allowed by the study, its limit a subject reached, "
        "or no visit dispensed yet), insufficient_supply (the site could not serve a subject "
        "of every arm; the supply manager is told), subject_not_on_treatment, "
        "subject_not_randomized; 422 weight_out_of_range."
    ),
    operation_id="dispense_unscheduled",
)
@problems(
    subjects.SubjectNotFound,
    subjects.SubjectNotRandomized,
    subjects.SubjectNotOnTreatment,
    UnscheduledNotAllowed,
    dispensing.InsufficientSupply,
    dispensing.WeightOutOfRange,
    visits_service.InvalidVisitReason,
    blinding.StudyLocked,
)
def dispense_unscheduled(
    study: str,
    subject_id: SubjectId,
    body: UnscheduledCreate,
    principal: Annotated[Principal, Depends(require(Action.DISPENSE))],
    container: Deps,
    idem: Idem,
) -> DispensationRead:
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_dispensation))
    result = visits_service.dispense_unscheduled(
        uow, principal, study, subject_id, body.weight_kg, body.reason
    )
    return dispensation_read(result)


@router.get(
    "/studies/{study}/sites/{site_id}/due",
    response_model=SiteDueRead,
    summary="The site's subjects on treatment with their next visit and overdue ones",
    description=(
        "Randomized subjects only (never registered, screen-failed or ended ones), by subject "
        "id; `visit` is the earliest visit due or upcoming on `on` with its window as "
        "site-local dates, `overdue_visits` the earlier ones whose window closed with nothing "
        "recorded. 404 site_not_found for a site outside the caller's."
    ),
    operation_id="get_site_due_visits",
)
@problems(SiteNotFound)
def site_due(
    study: str,
    site_id: SiteCode,
    principal: Annotated[Principal, Depends(require(Action.SUBJECT_READ))],
    container: Deps,
    on: Annotated[
        date | None, Query(description="a site-local date; default: today at the site")
    ] = None,
) -> SiteDueRead:
    due = visits_service.site_due(container.uow(principal.actor), principal, study, site_id, on)
    return SiteDueRead(
        site_id=due.site,
        timezone=due.timezone,
        on=due.on,
        subjects=[
            DueRead(
                subject_id=entry.subject_id,
                visit=None if entry.due.next is None else scheduled_visit_read(entry.due.next),
                overdue=bool(entry.due.overdue),
                overdue_visits=list(entry.due.overdue),
            )
            for entry in due.subjects
        ],
    )
