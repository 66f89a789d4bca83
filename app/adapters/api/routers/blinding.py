"""Emergency unblinding and the unblinded statistician's exports and study lock.

These are the only routes whose answers carry arms, each to the one caller entitled to it;
they are sent `Cache-Control: no-store`. The stored answer of an idempotent unblinding holds
no arm (the database never does): a replay re-reads it, checked and audited again.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.adapters.api.auth import Forbidden, get_principal, require
from app.adapters.api.deps import get_container
from app.adapters.api.idempotency import IdempotencyRequest, idempotency_request
from app.adapters.api.openapi import json_body, problems
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.schemas import Text, examples
from app.adapters.db.idempotency import IdempotentReplay
from app.adapters.exports import list_csv, pooled_csv
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.domain.errors import StudyNotFound
from app.domain.subjects import NoActiveList, SubjectNotFound, SubjectNotRandomized
from app.services import blinding

router = APIRouter(prefix="/api/v1", tags=["blinding"], route_class=ThreadPoolRoute)

SUBJECT_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SubjectId = Annotated[str, Path(pattern=SUBJECT_ID)]
Idem = Annotated[IdempotencyRequest, Depends(idempotency_request)]
Deps = Annotated[Container, Depends(get_container)]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CSV_TYPE = "text/csv; charset=utf-8"
LIST_CSV_EXAMPLE = (
    "stratum,sequence,randomization_number,block,block_size,arm,subject_id,allocated_at,"
    "stratum_corrected\r\n"
    "FR01|shock=yes|age=lt65,1,1001,1,4,ARM_A,FR01-001,2026-03-02T10:05:17+00:00,\r\n"
)
POOLED_CSV_EXAMPLE = (
    "study,site,subject,stratum,randomization_number,arm,randomized_at,unblinded,"
    "stratum_corrected\r\n"
    "iris-7a,FR01,FR01-001,FR01|shock=yes|age=lt65,1001,ARM_A,2026-03-02T10:05:17+00:00,"
    "false,\r\n"
)


class UnblindingCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "anaphylaxis; the treating team must know"}]},
    )

    reason: Text = Field(min_length=1, max_length=blinding.MAX_REASON)


class UnblindingRead(BaseModel):
    """The arm of one subject, to the caller only (examples use a neutral arm code)."""

    model_config = examples(
        {
            "subject_id": "FR01-001",
            "arm": "ARM_A",
            "arm_label": "Arm A",
            "unblinded_at": "2026-03-07T02:14:55Z",
            "unblinded_by": "client:safety-desk",
        }
    )

    subject_id: str
    arm: str
    arm_label: str
    unblinded_at: datetime
    unblinded_by: str


class StudyLockCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "database lock, last visit"}]}
    )

    reason: Text = Field(min_length=1, max_length=blinding.MAX_REASON)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason is required")
        return value.strip()


class StudyLockRead(BaseModel):
    model_config = examples(
        {"study": "iris-7a", "locked_at": "2027-01-15T09:00:00Z", "locked_by": "user:stat-lead"}
    )

    study: str
    locked_at: datetime
    locked_by: str


class SubjectArmRead(BaseModel):
    model_config = examples(
        {
            "subject_id": "FR01-001",
            "site_id": "FR01",
            "arm": "ARM_A",
            "arm_label": "Arm A",
            "locked_at": "2027-01-15T09:00:00Z",
        }
    )

    subject_id: str
    site_id: str
    arm: str
    arm_label: str
    locked_at: datetime


class ListLineRead(BaseModel):
    stratum: str
    sequence: int
    randomization_number: int
    block: int
    block_size: int
    arm: str
    subject_id: str | None
    allocated_at: datetime | None
    stratum_corrected: str | None = Field(
        default=None,
        description=(
            "the taking subject's stratum as corrected after randomization (the slot, the "
            "arm and `stratum` stay as randomized); null when never corrected"
        ),
    )


class ListExportRead(BaseModel):
    model_config = examples(
        {
            "study": "iris-7a",
            "mode": "live",
            "list_version": 1,
            "method": "permuted_block",
            "slots": [
                {
                    "stratum": "FR01|shock=yes|age=lt65",
                    "sequence": 1,
                    "randomization_number": 1001,
                    "block": 1,
                    "block_size": 4,
                    "arm": "ARM_A",
                    "subject_id": "FR01-001",
                    "allocated_at": "2026-03-02T10:05:17Z",
                    "stratum_corrected": None,
                }
            ],
        }
    )

    study: str
    mode: str
    list_version: int
    method: str
    slots: list[ListLineRead]


# --- Emergency unblinding -------------------------------------------------------------------


def unblinding_principal(
    study: str,
    subject_id: SubjectId,
    principal: Annotated[Principal, Depends(get_principal)],
    container: Deps,
) -> Principal:
    """Like `require(Action.UNBLIND)`, but a refused role is audited before the 403."""
    if not principal.may(Action.UNBLIND):
        blinding.record_refusal(
            container.uow(principal.actor), principal, study, subject_id, None, "forbidden"
        )
        raise Forbidden(f"the {principal.role.value} role may not {Action.UNBLIND.value}")
    return principal


unblinding_principal.iwrs_action = Action.UNBLIND  # type: ignore[attr-defined]


def _stored_unblinding(result: blinding.Unblinding) -> tuple[int, Any]:
    """What the idempotency record keeps: the answer without its arm."""
    return 200, {
        "subject_id": result.subject_id,
        "unblinded_at": result.unblinded_at.isoformat(),
        "unblinded_by": result.unblinded_by,
    }


def _unblinding_body(stored: dict[str, Any], arm: str, label: str) -> dict[str, Any]:
    return {
        "subject_id": stored["subject_id"],
        "arm": arm,
        "arm_label": label,
        "unblinded_at": stored["unblinded_at"],
        "unblinded_by": stored["unblinded_by"],
    }


def _reason_of(payload: Any) -> str | None:
    """The reason, when the body is `{"reason": "<text>"}`; None makes the use case refuse
    (and audit) the request, as it does for a blank or too long reason."""
    if isinstance(payload, dict) and set(payload) <= {"reason"}:
        reason = payload.get("reason")
        return reason if isinstance(reason, str) else None
    return None


@router.post(
    "/studies/{study}/subjects/{subject_id}/unblinding",
    response_model=UnblindingRead,
    operation_id="unblind_subject",
    summary="Emergency unblinding: the subject's arm, to the caller only",
)
@json_body(UnblindingCreate)
@problems(SubjectNotFound, SubjectNotRandomized, blinding.TokenNotFresh, blinding.InvalidRequest)
def unblind(
    study: str,
    subject_id: SubjectId,
    principal: Annotated[Principal, Depends(unblinding_principal)],
    container: Deps,
    idem: Idem,
    payload: Annotated[Any, Body()] = None,
) -> Response:
    """Emergency unblinding: the subject's arm, to the caller only. Needs a fresh token
    (issued within the study's `fresh_token_seconds`) and a reason; audited, refusals too."""
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _stored_unblinding))
    try:
        result = blinding.unblind(
            uow, container.uow(principal.actor), principal, study, subject_id, _reason_of(payload)
        )
    except IdempotentReplay as replay:
        stored = json.loads(replay.body)
        arm, label = blinding.reveal_again(
            container.uow(principal.actor),
            container.uow(principal.actor),
            principal,
            study,
            subject_id,
            _reason_of(payload),
        )
        return JSONResponse(
            _unblinding_body(stored, arm, label),
            status_code=replay.status_code,
            headers={**NO_STORE, "Idempotent-Replayed": "true"},
        )
    _, stored = _stored_unblinding(result)
    return JSONResponse(_unblinding_body(stored, result.arm, result.arm_label), headers=NO_STORE)


# --- Study lock and arms after it -----------------------------------------------------------


def _lock_read(lock: blinding.StudyLock) -> StudyLockRead:
    return StudyLockRead(study=lock.study, locked_at=lock.locked_at, locked_by=lock.locked_by)


def _render_lock(lock: blinding.StudyLock) -> tuple[int, Any]:
    return 200, _lock_read(lock).model_dump(mode="json")


@router.post(
    "/studies/{study}/lock",
    response_model=StudyLockRead,
    operation_id="lock_study",
    summary="Lock the study for good, with a reason",
)
@problems(blinding.StudyLocked)
def lock_study(
    study: str,
    body: StudyLockCreate,
    principal: Annotated[Principal, Depends(require(Action.STUDY_LOCK))],
    container: Deps,
    idem: Idem,
) -> StudyLockRead:
    """Lock the study for good: no more registration, randomization or dispensing; each
    investigator may then read its own subjects' arms. A second lock gets 409."""
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_lock))
    return _lock_read(blinding.lock_study(uow, principal, study, body.reason))


@router.get(
    "/studies/{study}/subjects/{subject_id}/arm",
    response_model=SubjectArmRead,
    operation_id="get_subject_arm",
    summary="After the lock: the arm of a subject of the investigator's sites",
)
@problems(
    SubjectNotFound, SubjectNotRandomized, blinding.StudyNotLocked, blinding.BlindingForbidden
)
def subject_arm(
    study: str,
    subject_id: SubjectId,
    principal: Annotated[Principal, Depends(require(Action.ARM_READ))],
    container: Deps,
) -> Response:
    """After the lock only (409 study_not_locked before): the arm of a subject of one of
    the investigator's own sites. Investigators only (the other roles that may see an arm
    have the exports and emergency unblinding); audited."""
    found = blinding.arm_after_lock(container.uow(principal.actor), principal, study, subject_id)
    body = SubjectArmRead(
        subject_id=found.subject_id,
        site_id=found.site,
        arm=found.arm,
        arm_label=found.arm_label,
        locked_at=found.locked_at,
    )
    return JSONResponse(body.model_dump(mode="json"), headers=NO_STORE)


# --- Exports ----------------------------------------------------------------------------------


@router.get(
    "/studies/{study}/randomization-list",
    response_model=ListExportRead,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}, "example": LIST_CSV_EXAMPLE}}}
    },
    operation_id="get_randomization_list",
    summary="The whole randomization list with arms, as JSON or CSV",
)
@problems(NoActiveList)
def randomization_list(
    study: str,
    principal: Annotated[Principal, Depends(require(Action.LIST_READ))],
    container: Deps,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
    mode: Annotated[Literal["live", "uat"] | None, Query()] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """Every slot of the active list (of the study's current mode unless `mode`), with its
    arm and the subject that took it: JSON, or CSV with `Accept: text/csv` or `?format=csv`."""
    fmt = format or ("csv" if accept and "text/csv" in accept.lower() else "json")
    if fmt == "csv":
        return _list_csv(principal, container, study, mode)
    export = blinding.export_list(container.uow(principal.actor), principal, study, fmt, mode)
    body = ListExportRead(
        study=export.study,
        mode=export.mode,
        list_version=export.version,
        method=export.method,
        slots=[
            ListLineRead(
                stratum=x.stratum,
                sequence=x.sequence,
                randomization_number=x.randomization_number,
                block=x.block,
                block_size=x.block_size,
                arm=x.arm,
                subject_id=x.subject_id,
                allocated_at=x.allocated_at,
                stratum_corrected=x.stratum_corrected,
            )
            for x in export.lines
        ],
    )
    return JSONResponse(body.model_dump(mode="json"), headers=NO_STORE)


@router.get(
    "/studies/{study}/randomization-list.csv",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}, "example": LIST_CSV_EXAMPLE}},
            "description": "one row per slot",
        }
    },
    operation_id="export_randomization_list_csv",
    summary="The whole randomization list with arms, as CSV",
)
@problems(NoActiveList)
def randomization_list_csv(
    study: str,
    principal: Annotated[Principal, Depends(require(Action.LIST_READ))],
    container: Deps,
    mode: Annotated[Literal["live", "uat"] | None, Query()] = None,
) -> Response:
    """The same list as `GET .../randomization-list?format=csv`, under an operation of its
    own, so that a generated client reads it as text (one media type per operation)."""
    return _list_csv(principal, container, study, mode)


def _list_csv(principal: Principal, container: Container, study: str, mode: str | None) -> Response:
    export = blinding.export_list(container.uow(principal.actor), principal, study, "csv", mode)
    name = f"{export.study}-{export.mode}-v{export.version}-randomization-list.csv"
    return Response(
        list_csv(export.lines),
        media_type=CSV_TYPE,
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/pooled/allocations",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}, "example": POOLED_CSV_EXAMPLE}},
            "description": "one row per subject",
        }
    },
    operation_id="export_pooled_allocations",
    summary="Every allocation of the named studies, one CSV row per subject",
)
@problems(StudyNotFound, blinding.InvalidRequest)
def pooled_allocations(
    principal: Annotated[Principal, Depends(require(Action.POOLED_EXPORT))],
    container: Deps,
    studies: Annotated[str, Query(max_length=500, examples=["iris-7a,iris-7b"])],
) -> Response:
    """Every allocation of the named studies in one CSV for the common analysis; the caller
    must be granted every study named (404 for one it cannot see)."""
    rows = blinding.pooled_allocations(
        container.uow(principal.actor), principal, studies.split(",")
    )
    text = pooled_csv(rows)
    disposition = 'attachment; filename="pooled-allocations.csv"'
    return Response(
        text, media_type=CSV_TYPE, headers={**NO_STORE, "Content-Disposition": disposition}
    )
