"""The simulation clock: mounted only on a service started with IWRS_SIMULATION_CLOCK_FILE
(by `iwrs simulate`), never in production."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.openapi import problems
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.clock import FileOffsetClock
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.domain.errors import Conflict
from app.services.housekeeping import housekeeping

router = APIRouter(prefix="/api/v1/simulation", tags=["simulation"], route_class=ThreadPoolRoute)


class ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"days": 3}]})

    days: float = Field(gt=0, le=365)


class ClockRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"now": "2026-03-05T09:00:00Z"}]})

    now: datetime


@router.post(
    "/clock",
    response_model=ClockRead,
    operation_id="advance_simulation_clock",
    summary="Move the simulation clock forward, then run the day's housekeeping",
)
@problems(Conflict)
def advance_clock(
    body: ClockAdvance,
    principal: Annotated[Principal, Depends(require(Action.SIMULATION_CLOCK, verify_now=True))],
    container: Annotated[Container, Depends(get_container)],
) -> ClockRead:
    if not isinstance(container.clock, FileOffsetClock):
        raise Conflict("this service has no simulation clock")
    now = container.clock.advance(timedelta(days=body.days))
    # A simulated day starts as a real one does: the housekeeping's expiry and resupply review.
    actor = container.system_actor("housekeeping")
    retention = timedelta(seconds=container.settings.idempotency_retention_seconds)
    housekeeping(lambda: container.uow(actor), retention)
    return ClockRead(now=now)
