"""The unblinded statistician's list work: generate, QC, upload, extend."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.idempotency import IdempotencyRequest, idempotency_request
from app.adapters.api.openapi import problems
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.schemas import Text, examples
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.domain.errors import DomainError, StudyNotFound
from app.domain.subjects import NoActiveList
from app.services import lists as list_service
from app.services import randomization as rnd

router = APIRouter(prefix="/api/v1", tags=["randomization lists"], route_class=ThreadPoolRoute)
Deps = Annotated[Container, Depends(get_container)]
Idem = Annotated[IdempotencyRequest, Depends(idempotency_request)]
Generate = Annotated[Principal, Depends(require(Action.LIST_GENERATE))]


class GeneratedRead(BaseModel):
    model_config = examples(
        {
            "study": "iris-7a",
            "mode": "live",
            "version": 1,
            "method": "permuted_block",
            "strata": 16,
            "slots": 960,
        }
    )

    study: str
    mode: str
    version: int
    method: str
    strata: int
    slots: int


class ExtensionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"slots": 60, "reason": "recruitment above forecast"}]},
    )

    slots: int = Field(ge=1, le=100_000)
    reason: Text = Field(min_length=1, max_length=2000)


class ExtensionRead(BaseModel):
    model_config = examples(
        {"study": "iris-7a", "stratum": "FR01|shock=yes|age=lt65", "added": 60, "length": 120}
    )

    study: str
    stratum: str
    added: int
    length: int


class StratumQcRead(BaseModel):
    stratum: str
    length: int
    counts: dict[str, int] = Field(description="slots by arm")
    block_sizes_used: dict[str, int] = Field(description="blocks by size")
    unbalanced_blocks: list[int] = Field(description="the numbers of unbalanced blocks")
    max_imbalance: float
    predictability: float
    used: int = Field(description="slots taken by subjects")


class ListQcRead(BaseModel):
    """The quality check of the active list (unblinded: counts by arm)."""

    model_config = examples(
        {
            "study": "iris-7a",
            "mode": "live",
            "version": 1,
            "method": "permuted_block",
            "regenerated_from_seed": True,
            "matches_seed": True,
            "differing_strata": [],
            "length": 60,
            "counts": {"ARM_A": 30, "ARM_B": 30},
            "block_sizes_used": {"4": 9, "6": 4},
            "unbalanced_blocks": 0,
            "max_imbalance": 1.0,
            "predictability": 0.68,
            "strata": [
                {
                    "stratum": "FR01|shock=yes|age=lt65",
                    "length": 60,
                    "counts": {"ARM_A": 30, "ARM_B": 30},
                    "block_sizes_used": {"4": 9, "6": 4},
                    "unbalanced_blocks": [],
                    "max_imbalance": 1.0,
                    "predictability": 0.68,
                    "used": 12,
                }
            ],
        }
    )

    study: str
    mode: str
    version: int
    method: str
    regenerated_from_seed: bool
    matches_seed: bool
    differing_strata: list[str]
    length: int
    counts: dict[str, int] = Field(description="slots by arm")
    block_sizes_used: dict[str, int] = Field(description="blocks by size")
    unbalanced_blocks: int
    max_imbalance: float
    predictability: float
    strata: list[StratumQcRead]


def _scope(principal: Principal, study: str) -> None:
    if not principal.sees_study(study):
        raise StudyNotFound(f"no study {study!r}")


def _render_generated(result: rnd.GeneratedList) -> tuple[int, Any]:
    return 201, GeneratedRead(
        **{f: getattr(result, f) for f in GeneratedRead.model_fields}
    ).model_dump()


@router.post(
    "/studies/{study}/randomization-list",
    status_code=201,
    response_model=GeneratedRead,
    operation_id="generate_randomization_list",
    summary="Generate the study's randomization lists and kit list (secret seed)",
)
@problems(rnd.ListInUse, rnd.WrongMethod)
def generate(study: str, principal: Generate, container: Deps, idem: Idem) -> GeneratedRead:
    _scope(principal, study)
    result = rnd.generate_list(
        container.uow(principal.actor, idempotency=idem.guard(principal, _render_generated)),
        principal.actor.actor_id,
        study,
    )
    return GeneratedRead(**{f: getattr(result, f) for f in GeneratedRead.model_fields})


@router.get(
    "/studies/{study}/randomization-list/qc",
    response_model=ListQcRead,
    operation_id="get_randomization_list_qc",
    summary="The active list's quality check, regenerated from its seed",
)
@problems(NoActiveList)
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
    operation_id="upload_randomization_list",
    summary="Upload a randomization list made elsewhere (CSV)",
    description=(
        "The list as a CSV file, sent as the raw body: `Content-Type: text/csv` or "
        "`application/octet-stream` (the one published, which client generators support)."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "example": "stratum,sequence,randomization_number,arm,block\n"
                    "FR01|shock=yes|age=lt65,1,1001,ARM_A,1\n",
                }
            },
        }
    },
)
@problems(list_service.ListUploadRejected, rnd.ListInUse, rnd.WrongMethod)
def upload(
    study: str,
    principal: Generate,
    container: Deps,
    body: Annotated[str, Body(media_type="application/octet-stream", max_length=50_000_000)],
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
    operation_id="extend_stratum",
    summary="Add slots to a stratum's list, with a reason",
)
@problems(list_service.UnknownStratum, NoActiveList, rnd.WrongMethod, DomainError)
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
