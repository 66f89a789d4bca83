"""The unblinded statistician's list work: generate, QC, upload, extend."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.idempotency import IdempotencyRequest, idempotency_request
from app.adapters.api.routing import ThreadPoolRoute
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.domain.errors import StudyNotFound
from app.services import lists as list_service
from app.services import randomization as rnd

router = APIRouter(prefix="/api/v1", tags=["randomization lists"], route_class=ThreadPoolRoute)
Deps = Annotated[Container, Depends(get_container)]
Idem = Annotated[IdempotencyRequest, Depends(idempotency_request)]
Generate = Annotated[Principal, Depends(require(Action.LIST_GENERATE))]


class GeneratedRead(BaseModel):
    study: str
    mode: str
    version: int
    method: str
    strata: int
    slots: int


class ExtensionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slots: int = Field(ge=1, le=100_000)
    reason: str = Field(min_length=1, max_length=2000)


class ExtensionRead(BaseModel):
    study: str
    stratum: str
    added: int
    length: int


def _scope(principal: Principal, study: str) -> None:
    if not principal.sees_study(study):
        raise StudyNotFound(f"no study {study!r}")


def _render_generated(result: rnd.GeneratedList) -> tuple[int, Any]:
    return 201, GeneratedRead(
        **{f: getattr(result, f) for f in GeneratedRead.model_fields}
    ).model_dump()


@router.post("/studies/{study}/randomization-list", status_code=201, response_model=GeneratedRead)
def generate(study: str, principal: Generate, container: Deps, idem: Idem) -> GeneratedRead:
    _scope(principal, study)
    result = rnd.generate_list(
        container.uow(principal.actor, idempotency=idem.guard(principal, _render_generated)),
        principal.actor.actor_id,
        study,
    )
    return GeneratedRead(**{f: getattr(result, f) for f in GeneratedRead.model_fields})


@router.get("/studies/{study}/randomization-list/qc")
def qc(
    study: str,
    principal: Annotated[Principal, Depends(require(Action.LIST_READ))],
    container: Deps,
) -> dict[str, Any]:
    _scope(principal, study)
    return list_service.qc_as_dict(list_service.list_qc(container.uow(principal.actor), study))


@router.post(
    "/studies/{study}/randomization-list/upload",
    status_code=201,
    response_model=GeneratedRead,
    openapi_extra={
        "requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}
    },
)
def upload(
    study: str,
    principal: Generate,
    container: Deps,
    body: Annotated[str, Body(media_type="text/csv", max_length=50_000_000)],
) -> GeneratedRead:
    _scope(principal, study)
    info = list_service.upload_list(
        container.uow(principal.actor), principal.actor.actor_id, study, body
    )
    uow = container.uow(principal.actor)
    with uow:
        strata = uow.lists.strata(info)
    return GeneratedRead(
        study=study,
        mode=info.mode,
        version=info.version,
        method=info.method,
        strata=len(strata),
        slots=sum(s.length for s in strata),
    )


def _render_extension(result: list_service.Extension) -> tuple[int, Any]:
    return 201, ExtensionRead(
        **{f: getattr(result, f) for f in ExtensionRead.model_fields}
    ).model_dump()


@router.post(
    "/studies/{study}/randomization-list/strata/{stratum}/extension",
    status_code=201,
    response_model=ExtensionRead,
)
def extend(
    study: str,
    stratum: Annotated[str, Path(max_length=255)],
    body: ExtensionCreate,
    principal: Generate,
    container: Deps,
    idem: Idem,
) -> ExtensionRead:
    _scope(principal, study)
    result = list_service.extend_stratum(
        container.uow(principal.actor, idempotency=idem.guard(principal, _render_extension)),
        study,
        stratum,
        body.slots,
        body.reason,
    )
    return ExtensionRead(**{f: getattr(result, f) for f in ExtensionRead.model_fields})
