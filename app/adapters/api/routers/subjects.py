"""Subjects: registration (and re-screening), randomization (with the eligibility answers),
the blinded subject view, the end of a subject's participation (discontinuation, completion,
screen failure) and the correction of a stratum level. No response here carries an arm or a
kit type."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from app.adapters.api.auth import require
from app.adapters.api.deps import get_container
from app.adapters.api.idempotency import IdempotencyRequest, idempotency_request
from app.adapters.api.openapi import problems
from app.adapters.api.routers.supply import dispensation_read
from app.adapters.api.routers.visits import ScheduledVisitRead, scheduled_visit_read
from app.adapters.api.routing import ThreadPoolRoute
from app.adapters.api.schemas import (
    DISPENSATION_EXAMPLE,
    DispensationRead,
    Text,
    WeightKg,
    examples,
)
from app.bootstrap import Container
from app.domain import enrolment, subjects
from app.domain.access import Action, Principal
from app.domain.dispensing import InsufficientSupply, WeightOutOfRange
from app.domain.subjects import Subject
from app.services import blinding
from app.services import randomization as rnd
from app.services import subjects as subjects_service
from app.services.subjects import SubjectView

router = APIRouter(prefix="/api/v1", tags=["subjects"], route_class=ThreadPoolRoute)

SUBJECT_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SubjectId = Annotated[str, Path(pattern=SUBJECT_ID)]
Idem = Annotated[IdempotencyRequest, Depends(idempotency_request)]
Deps = Annotated[Container, Depends(get_container)]


SUBJECT_EXAMPLE: dict[str, Any] = {
    "subject_id": "FR01-001",
    "site_id": "FR01",
    "status": "randomized",
    "strata": {"shock": "yes", "age": "lt65"},
    "registered_at": "2026-03-01T08:30:00Z",
    "randomized_at": "2026-03-02T10:05:17Z",
    "randomization_number": 1001,
    "unblinded": False,
    "ended_at": None,
    "end_reason": None,
    "rescreen_of": None,
    "rescreened_as": None,
    "strata_corrected": None,
    "eligibility": {"consent": True},
    "dispensations": [
        {
            "visit": "D1",
            "dispensed_at": "2026-03-02T10:05:17Z",
            "weight_kg": "71.5",
            "kit_numbers": ["48210372", "48210452"],
        }
    ],
    "visits": [
        {
            "visit": "D1",
            "day": 1,
            "opens_date": "2026-03-02",
            "closes_date": "2026-03-02",
            "status": "dispensed",
        },
        {
            "visit": "D4",
            "day": 4,
            "opens_date": "2026-03-04",
            "closes_date": "2026-03-06",
            "status": "upcoming",
        },
    ],
}


class SubjectCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"subject_id": "FR01-001", "site_id": "FR01", "strata": {"shock": "yes"}}]
        },
    )

    subject_id: str = Field(pattern=SUBJECT_ID)
    site_id: str = Field(pattern=r"^[A-Z]{2}[0-9]{2,4}$")
    strata: dict[Text, Text] = Field(default_factory=dict)
    rescreen_of: str | None = Field(
        default=None,
        pattern=SUBJECT_ID,
        description=(
            "re-screening: the id of the earlier, screen-failed registration of this person "
            "at the same site, where the study allows it (409 rescreening_not_allowed, "
            "422 rescreen_of_not_found, 409 rescreen_of_not_screen_failed, "
            "subject_already_rescreened, rescreen_limit_reached)"
        ),
    )


class RandomizationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"weight_kg": 71.5, "eligibility": {"consent": True}}]},
    )

    weight_kg: WeightKg | None = Field(
        default=None,
        description=(
            "to dispense the first visit's kits at once; outside every weight band of the "
            "study: 422 weight_out_of_range"
        ),
    )
    eligibility: dict[str, StrictBool] | None = Field(
        default=None,
        description=(
            "the answers to the study's eligibility questions (GET /studies/{study}: "
            "`eligibility`), each true; a question unanswered or not true, or an unknown "
            "one: 422 eligibility_not_confirmed, nothing changed"
        ),
    )


class SubjectDispensationRead(BaseModel):
    """A visit's dispensing in the subject record: kit numbers, never types."""

    visit: str
    dispensed_at: datetime
    weight_kg: str = Field(description='the weight dispensed for, as a decimal string: "71.5"')
    kit_numbers: list[str]


class SubjectRead(BaseModel):
    model_config = examples(SUBJECT_EXAMPLE)

    subject_id: str
    site_id: str
    status: str
    strata: dict[str, str]
    registered_at: datetime
    randomized_at: datetime | None
    randomization_number: int | None
    unblinded: bool
    ended_at: datetime | None = None
    end_reason: str | None = Field(
        default=None, description="the discontinuation or screen failure reason code"
    )
    rescreen_of: str | None = Field(
        default=None, description="the earlier, screen-failed registration this one re-screens"
    )
    rescreened_as: str | None = Field(
        default=None, description="the later registration that re-screens this one"
    )
    strata_corrected: dict[str, str] | None = Field(
        default=None,
        description=(
            "every level as corrected after randomization; `strata` keeps the levels the "
            "subject was randomized with (analysed as randomized)"
        ),
    )
    eligibility: dict[str, bool] | None = Field(
        default=None, description="the eligibility answers attested at randomization"
    )
    dispensations: list[SubjectDispensationRead] = Field(default_factory=list)
    visits: list[ScheduledVisitRead] = Field(
        default_factory=list,
        description=(
            "the visit schedule with windows as site-local dates and each visit's status: "
            "dispensed, missed, held, due, upcoming or closed"
        ),
    )


class DiscontinuationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "adverse_event", "detail": None}]},
    )

    reason: Text = Field(
        min_length=1,
        max_length=64,
        description=(
            "one of the study's discontinuation reasons (by default adverse_event, death, "
            "consent_withdrawn, investigator_decision, lost_to_follow_up, other); otherwise "
            "422 invalid_discontinuation_reason"
        ),
    )
    detail: Text | None = Field(
        default=None, max_length=1000, description="free text; required with reason 'other'"
    )


class ScreenFailureCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "inclusion_criterion_not_met"}]},
    )

    reason: Text = Field(
        min_length=1,
        max_length=64,
        description=(
            "one of the study's screen failure reasons (by default "
            "inclusion_criterion_not_met, exclusion_criterion_met, consent_not_obtained, "
            "death, investigator_decision, other); otherwise 422 invalid_screen_failure_reason"
        ),
    )
    detail: Text | None = Field(
        default=None, max_length=1000, description="free text; required with reason 'other'"
    )


class StratumCorrectionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"factor": "age", "level": "ge65", "reason": "date of birth entered wrongly"}
            ]
        },
    )

    factor: Text = Field(min_length=1, max_length=64, description="a stratification factor code")
    level: Text = Field(min_length=1, max_length=64, description="the right level's code")
    reason: Text = Field(min_length=1, max_length=1000, description="why the level was wrong")


class CompletionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"detail": "last visit done"}]}
    )

    detail: Text | None = Field(default=None, max_length=1000)


class RandomizationRead(BaseModel):
    model_config = examples(
        {
            "subject_id": "FR01-001",
            "randomization_number": 1001,
            "randomized_at": "2026-03-02T10:05:17Z",
            "site_id": "FR01",
            "stratum": "FR01|shock=yes|age=lt65",
            "strata": {"shock": "yes", "age": "lt65"},
            "dispensation": {**DISPENSATION_EXAMPLE, "visit": "D1"},
        }
    )

    subject_id: str
    randomization_number: int
    randomized_at: datetime
    site_id: str
    stratum: str
    strata: dict[str, str]
    dispensation: DispensationRead | None


def subject_read(
    subject: Subject,
    dispensations: list[dict[str, Any]] | None = None,
    rescreen_of: str | None = None,
    rescreened_as: str | None = None,
) -> SubjectRead:
    return SubjectRead(
        subject_id=subject.subject_id,
        site_id=subject.site,
        status=subject.status.value,
        strata=dict(subject.strata),
        registered_at=subject.registered_at,
        randomized_at=subject.randomized_at,
        randomization_number=subject.randomization_number,
        unblinded=subject.unblinded,
        ended_at=subject.ended_at,
        end_reason=subject.end_reason,
        rescreen_of=rescreen_of,
        rescreened_as=rescreened_as,
        strata_corrected=None
        if subject.strata_corrected is None
        else dict(subject.strata_corrected),
        eligibility=None if subject.eligibility is None else dict(subject.eligibility),
        dispensations=[SubjectDispensationRead.model_validate(d) for d in dispensations or ()],
    )


def subject_view_read(view: SubjectView) -> SubjectRead:
    read = subject_read(
        view.subject,
        [
            {
                "visit": v.visit,
                "dispensed_at": v.dispensed_at,
                "weight_kg": v.weight_kg,
                "kit_numbers": list(v.kit_numbers),
            }
            for v in view.dispensations
        ],
        view.rescreen_of,
        view.rescreened_as,
    )
    read.visits = [scheduled_visit_read(v) for v in view.visits]
    return read


def _render_view(view: SubjectView) -> tuple[int, Any]:
    return 200, subject_view_read(view).model_dump(mode="json")


def _render_subject(subject: Subject) -> tuple[int, Any]:
    return 201, subject_read(subject).model_dump(mode="json")


def randomization_read(r: rnd.Randomization) -> RandomizationRead:
    return RandomizationRead(
        subject_id=r.subject_id,
        randomization_number=r.randomization_number,
        randomized_at=r.randomized_at,
        site_id=r.site,
        stratum=r.stratum,
        strata=dict(r.strata),
        dispensation=None if r.dispensation is None else dispensation_read(r.dispensation),
    )


def _render_randomization(r: rnd.Randomization) -> tuple[int, Any]:
    return 201, randomization_read(r).model_dump(mode="json")


@router.post(
    "/studies/{study}/subjects",
    status_code=201,
    response_model=SubjectRead,
    operation_id="register_subject",
    summary="Register a subject at a site, with its stratification levels",
)
@problems(
    rnd.SiteForbidden,
    rnd.InvalidSite,
    subjects.InvalidStratum,
    subjects.SiteNotActive,
    subjects.SubjectAlreadyRegistered,
    subjects.SubjectIdUnavailable,
    subjects.RescreeningNotAllowed,
    subjects.RescreenOfNotFound,
    subjects.RescreenOfNotScreenFailed,
    subjects.SubjectAlreadyRescreened,
    subjects.RescreenLimitReached,
    enrolment.SiteEnrolmentClosed,
    enrolment.EnrolmentCapReached,
    rnd.ModeMismatch,
    blinding.StudyLocked,
)
def register(
    study: str,
    body: SubjectCreate,
    principal: Annotated[Principal, Depends(require(Action.SUBJECT_REGISTER))],
    container: Deps,
    idem: Idem,
) -> SubjectRead:
    def render(subject: Subject) -> tuple[int, Any]:
        # A re-screening names the earlier registration, as given and checked.
        return 201, subject_read(subject, rescreen_of=body.rescreen_of).model_dump(mode="json")

    uow = container.uow(principal.actor, idempotency=idem.guard(principal, render))
    subject = rnd.register_subject(
        uow, principal, study, body.subject_id, body.site_id, body.strata, body.rescreen_of
    )
    return subject_read(subject, rescreen_of=body.rescreen_of)


@router.post(
    "/studies/{study}/subjects/{subject_id}/randomization",
    status_code=201,
    response_model=RandomizationRead,
    operation_id="randomize_subject",
    summary="Randomize a registered subject (the answer never names the arm)",
)
@problems(
    subjects.SubjectNotFound,
    subjects.SubjectAlreadyRandomized,
    subjects.SubjectScreenFailed,
    subjects.SubjectAlreadyEnded,
    subjects.StratumExhausted,
    subjects.NoActiveList,
    subjects.SiteNotActive,
    subjects.InvalidStratum,
    subjects.EligibilityNotConfirmed,
    enrolment.SiteEnrolmentClosed,
    enrolment.EnrolmentCapReached,
    InsufficientSupply,
    WeightOutOfRange,
    rnd.ModeMismatch,
    blinding.StudyLocked,
)
def randomize(
    study: str,
    subject_id: SubjectId,
    principal: Annotated[Principal, Depends(require(Action.SUBJECT_RANDOMIZE))],
    container: Deps,
    idem: Idem,
    body: Annotated[RandomizationCreate | None, Body()] = None,
) -> RandomizationRead:
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_randomization))
    result = rnd.randomize(
        uow,
        principal,
        study,
        subject_id,
        body.weight_kg if body is not None else None,
        body.eligibility if body is not None else None,
    )
    return randomization_read(result)


@router.get(
    "/studies/{study}/subjects/{subject_id}",
    response_model=SubjectRead,
    operation_id="get_subject",
    summary="A subject's blinded record: status, dispensations, visit schedule",
)
@problems(subjects.SubjectNotFound)
def get_subject(
    study: str,
    subject_id: SubjectId,
    principal: Annotated[Principal, Depends(require(Action.SUBJECT_READ))],
    container: Deps,
) -> SubjectRead:
    view = subjects_service.subject_status(
        container.uow(principal.actor), principal, study, subject_id
    )
    return subject_view_read(view)


@router.post(
    "/studies/{study}/subjects/{subject_id}/discontinuation",
    response_model=SubjectRead,
    summary="Discontinue a randomized subject's treatment, with a reason",
    operation_id="discontinue_subject",
)
@problems(
    subjects.SubjectNotFound,
    subjects.SubjectNotRandomized,
    subjects.SubjectAlreadyEnded,
    subjects.InvalidDiscontinuationReason,
    blinding.StudyLocked,
)
def discontinue(
    study: str,
    subject_id: SubjectId,
    body: DiscontinuationCreate,
    principal: Annotated[Principal, Depends(require(Action.SUBJECT_END))],
    container: Deps,
    idem: Idem,
) -> SubjectRead:
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_view))
    view = subjects_service.discontinue(uow, principal, study, subject_id, body.reason, body.detail)
    return subject_view_read(view)


@router.post(
    "/studies/{study}/subjects/{subject_id}/completion",
    response_model=SubjectRead,
    summary="Record that a randomized subject completed the study",
    operation_id="complete_subject",
)
@problems(
    subjects.SubjectNotFound,
    subjects.SubjectNotRandomized,
    subjects.SubjectAlreadyEnded,
    blinding.StudyLocked,
)
def complete(
    study: str,
    subject_id: SubjectId,
    principal: Annotated[Principal, Depends(require(Action.SUBJECT_END))],
    container: Deps,
    idem: Idem,
    body: Annotated[CompletionCreate | None, Body()] = None,
) -> SubjectRead:
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_view))
    view = subjects_service.complete(
        uow, principal, study, subject_id, body.detail if body is not None else None
    )
    return subject_view_read(view)


@router.post(
    "/studies/{study}/subjects/{subject_id}/screen-failure",
    response_model=SubjectRead,
    summary="Record that a registered subject failed screening, with a reason",
    operation_id="record_screen_failure",
)
@problems(
    subjects.SubjectNotFound,
    subjects.SubjectAlreadyRandomized,
    subjects.SubjectAlreadyEnded,
    subjects.InvalidScreenFailureReason,
    blinding.StudyLocked,
)
def screen_failure(
    study: str,
    subject_id: SubjectId,
    body: ScreenFailureCreate,
    principal: Annotated[Principal, Depends(require(Action.SUBJECT_END))],
    container: Deps,
    idem: Idem,
) -> SubjectRead:
    """Once, and only before randomization (409 subject_already_randomized,
    subject_already_ended); the subject is never randomized (409 subject_screen_failed)."""
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_view))
    view = subjects_service.screen_fail(uow, principal, study, subject_id, body.reason, body.detail)
    return subject_view_read(view)


@router.post(
    "/studies/{study}/subjects/{subject_id}/stratum-correction",
    response_model=SubjectRead,
    summary="Correct a stratification level entered wrongly, with a reason",
    operation_id="correct_subject_stratum",
)
@problems(
    subjects.SubjectNotFound,
    subjects.SubjectScreenFailed,
    subjects.InvalidStratum,
    subjects.StratumUnchanged,
    subjects.InvalidCorrection,
    blinding.StudyLocked,
)
def stratum_correction(
    study: str,
    subject_id: SubjectId,
    body: StratumCorrectionCreate,
    principal: Annotated[Principal, Depends(require(Action.SUBJECT_REGISTER))],
    container: Deps,
    idem: Idem,
) -> SubjectRead:
    """After randomization the allocation never changes: `strata` keeps the levels used to
    randomize, `strata_corrected` shows the correction (422 invalid_stratum for an unknown
    factor or level, 422 stratum_unchanged when it is the level already). Before
    randomization the registered level is replaced."""
    uow = container.uow(principal.actor, idempotency=idem.guard(principal, _render_view))
    view = subjects_service.correct_stratum(
        uow, principal, study, subject_id, body.factor, body.level, body.reason
    )
    return subject_view_read(view)
