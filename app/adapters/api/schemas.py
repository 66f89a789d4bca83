"""Response and request bodies. Requests forbid unknown fields; no blinded response model
has a field that could hold an arm or a kit type."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Read(BaseModel):
    model_config = ConfigDict(frozen=True)


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


class StudyRead(StudySummaryRead):
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
    studies: list[StudySummaryRead]


class Health(_Read):
    status: str
    version: str


class Readiness(_Read):
    status: str
    checks: dict[str, str]
