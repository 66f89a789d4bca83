"""Response and request bodies. Requests forbid unknown fields; no blinded response model
has a field that could hold an arm or a kit type."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from app.domain.text import text_problem

# A body weight: a JSON number (a numeric string is accepted too, as it always was), kept
# exact as a Decimal for the weight bands; published as a number, so clients send one.
WeightKg = Annotated[
    Decimal,
    Field(allow_inf_nan=False),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 1000}),
]


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# Every text field of a request body: a JSON string that the database can store (see
# app.domain.text), so a lone surrogate or a NUL is a 422, never a 500.
Text = Annotated[str, AfterValidator(_storable)]


def examples(*values: dict[str, Any]) -> ConfigDict:
    """A model's examples in the OpenAPI document (blinded, unless the model is the
    unblinded caller's; arms there are neutral codes such as ARM_A)."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


class _Read(BaseModel):
    model_config = ConfigDict(frozen=True)


KIT_EXAMPLE: dict[str, Any] = {"kit_number": "48210372", "lot": "L0001", "expiry": "2027-06-30"}
DISPENSATION_EXAMPLE: dict[str, Any] = {
    "subject_id": "FR01-001",
    "visit": "D4",
    "kits": [KIT_EXAMPLE, {**KIT_EXAMPLE, "kit_number": "48210452"}],
    "dispensed_at": "2026-03-05T09:12:44Z",
}


class DispensedKitRead(BaseModel):
    """A kit handed to a subject: its number, lot and expiry; never its type."""

    model_config = examples(KIT_EXAMPLE)

    kit_number: str
    lot: str
    expiry: date


class DispensationRead(BaseModel):
    """The kits dispensed to a subject at a visit (scheduled, at randomization, or
    unscheduled: U1, U2...)."""

    model_config = examples(DISPENSATION_EXAMPLE)

    subject_id: str
    visit: str
    kits: list[DispensedKitRead]
    dispensed_at: datetime


class ArmRead(_Read):
    code: str
    label: str


class LevelRead(_Read):
    code: str
    label: str


class FactorRead(_Read):
    code: str
    label: str
    levels: list[LevelRead]


class SiteRead(_Read):
    code: str
    name: str
    country: str
    active: bool
    timezone: str


class VisitRead(_Read):
    code: str
    day: int
    window_before: int
    window_after: int


class StudySummaryRead(_Read):
    slug: str
    title: str
    protocol: str
    version: int


class EligibilityQuestionRead(_Read):
    code: str
    text: str
    text_fr: str | None = None


class UnscheduledRead(_Read):
    kit_rule: str = Field(
        description="last_visit: the kit type of the latest scheduled visit dispensed"
    )
    max_per_subject: int | None = Field(description="none: no limit")


STUDY_SUMMARY_EXAMPLE: dict[str, Any] = {
    "slug": "iris-7a",
    "title": "IRIS-7A: interleukin-7 in septic shock",
    "protocol": "IRIS-7A-2025",
    "version": 3,
}


class StudyRead(StudySummaryRead):
    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    **STUDY_SUMMARY_EXAMPLE,
                    "description": "Double-blind, placebo-controlled, stratified by site.",
                    "arms": [
                        {"code": "ARM_A", "label": "Arm A"},
                        {"code": "ARM_B", "label": "Arm B"},
                    ],
                    "stratification_factors": [
                        {
                            "code": "shock",
                            "label": "Septic shock",
                            "levels": [
                                {"code": "yes", "label": "Yes"},
                                {"code": "no", "label": "No"},
                            ],
                        }
                    ],
                    "stratify_by_site": True,
                    "randomization_method": "permuted_block",
                    "sites": [
                        {
                            "code": "FR01",
                            "name": "Hôpital Example",
                            "country": "FR",
                            "active": True,
                            "timezone": "Europe/Paris",
                        }
                    ],
                    "visits": [
                        {"code": "D1", "day": 1, "window_before": 0, "window_after": 0},
                        {"code": "D4", "day": 4, "window_before": 1, "window_after": 1},
                    ],
                    "pooled_with": ["iris-7b"],
                    "status": {
                        "mode": "live",
                        "list_version": 1,
                        "strata_running_low": [],
                        "strata_exhausted": [],
                    },
                    "discontinuation_reasons": ["adverse_event", "consent_withdrawn", "other"],
                    "screen_failure_reasons": ["inclusion_criterion_not_met", "other"],
                    "rescreening": True,
                    "max_rescreens": 1,
                    "eligibility": [{"code": "consent", "text": "Consent signed", "text_fr": None}],
                    "unscheduled": {"kit_rule": "last_visit", "max_per_subject": 2},
                }
            ]
        },
    )

    description: str
    arms: list[ArmRead]
    stratification_factors: list[FactorRead]
    stratify_by_site: bool
    randomization_method: str
    sites: list[SiteRead]
    visits: list[VisitRead]
    pooled_with: list[str]
    status: StudyStatusRead
    discontinuation_reasons: list[str] = Field(
        default_factory=list, description="the reason codes a discontinuation may name"
    )
    screen_failure_reasons: list[str] = Field(
        default_factory=list, description="the reason codes a screen failure may name"
    )
    rescreening: bool = Field(
        default=False, description="whether a screen-failed subject may be registered again"
    )
    max_rescreens: int = Field(default=1, description="re-screenings allowed per subject")
    eligibility: list[EligibilityQuestionRead] = Field(
        default_factory=list,
        description="questions the randomization must answer true, by code (none: no attestation)",
    )
    unscheduled: UnscheduledRead | None = Field(
        default=None,
        description="how an unscheduled dispensation is served (null: the study allows none)",
    )


class StudyStatusRead(_Read):
    mode: str
    list_version: int | None
    strata_running_low: list[str]
    strata_exhausted: list[str]


class StudyList(_Read):
    model_config = ConfigDict(
        frozen=True, json_schema_extra={"examples": [{"studies": [STUDY_SUMMARY_EXAMPLE]}]}
    )

    studies: list[StudySummaryRead]


class Health(_Read):
    model_config = ConfigDict(
        frozen=True, json_schema_extra={"examples": [{"status": "ok", "version": "0.1.0"}]}
    )

    status: str
    version: str


class Readiness(_Read):
    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "checks": {"database": "ok", "key": "ok", "study_keys": "ok"},
                }
            ]
        },
    )

    status: str
    checks: dict[str, str]
