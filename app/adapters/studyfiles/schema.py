"""The shape of a study definition file. Every model forbids unknown fields, so a typo is
an error that names the field rather than a setting silently ignored."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.domain.roles import Role
from app.domain.study import ImbalanceMeasure, RandomizationMethod

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,32}$")]
SiteCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}[0-9]{2,4}$")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArmDoc(_Model):
    code: Code
    label: Text


class LevelDoc(_Model):
    code: Code
    label: Text


class FactorDoc(_Model):
    code: Code
    label: Text
    levels: list[LevelDoc]


class DepotDoc(_Model):
    code: Code
    name: Text
    country: Country


class SiteDoc(_Model):
    code: SiteCode
    name: Text
    country: Country
    depot: Code
    active: bool = True
    timezone: Text = "UTC"


class VisitDoc(_Model):
    code: Code
    day: int = Field(ge=0, le=3650)
    window_before: int = Field(default=0, ge=0, le=365)
    window_after: int = Field(default=0, ge=0, le=365)


class KitTypeDoc(_Model):
    code: Code
    description: Text


class WeightBandDoc(_Model):
    min_kg: Decimal = Field(ge=0, le=500)
    max_kg: Decimal = Field(gt=0, le=500)
    quantity: int = Field(ge=1, le=50)


class DispensingDoc(_Model):
    kit_types: dict[Code, dict[Code, Code]] = Field(
        description="arm -> visit -> kit type (double-dummy: every arm has every visit)"
    )
    weight_bands: list[WeightBandDoc]


class MinimizationFactorDoc(_Model):
    factor: Code
    weight: float = 1.0


class MinimizationDoc(_Model):
    factors: list[MinimizationFactorDoc]
    imbalance: ImbalanceMeasure = ImbalanceMeasure.RANGE
    probability: float = 0.8


class RandomizationDoc(_Model):
    method: RandomizationMethod
    block_sizes: list[int] = Field(default_factory=list)
    stratify_by_site: bool = True
    cap_per_stratum: int = Field(default=100, ge=1, le=1_000_000)
    low_warning: int = Field(default=4, ge=0)
    minimization: MinimizationDoc | None = None


class SupplyLevelsDoc(_Model):
    initial: int = Field(ge=0)
    trigger: int = Field(ge=0)
    resupply: int = Field(ge=1)


class SupplyDoc(_Model):
    do_not_dispense_days: int
    kits_per_lot: int = Field(
        default=200, ge=1, description="kits of each type in one lot; every lot holds every type"
    )
    lot_shelf_life_days: int = Field(default=365, ge=1)
    resupply_rounds: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="kits made per site beyond its initial shipment, in resupply levels",
    )
    type_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "the largest share of a site's use the resupply review assumes one kit type "
            "takes; default: the design's largest share of one type at one visit; 1: no "
            "refusal, at about twice the kits shipped"
        ),
    )
    levels: dict[Code, SupplyLevelsDoc]


class UnblindingDoc(_Model):
    roles: list[Role]
    fresh_token_seconds: int = Field(default=300, ge=30, le=3600)


class SubjectsDoc(_Model):
    discontinuation_reasons: list[Code] | None = Field(
        default=None,
        description=(
            "the reason codes a subject's treatment may be discontinued for; 'other' asks "
            "for a text; default: adverse_event, death, consent_withdrawn, "
            "investigator_decision, lost_to_follow_up, other"
        ),
    )
    screen_failure_reasons: list[Code] | None = Field(
        default=None,
        description=(
            "the reason codes a registered subject may fail screening for; 'other' asks for "
            "a text; default: inclusion_criterion_not_met, exclusion_criterion_met, "
            "consent_not_obtained, death, investigator_decision, other"
        ),
    )
    rescreening: bool = Field(
        default=False,
        description=(
            "whether a screen-failed subject may be registered again (a new registration "
            "naming the earlier one in `rescreen_of`)"
        ),
    )
    max_rescreens: int = Field(
        default=1, ge=1, le=10, description="re-screenings allowed in one chain of registrations"
    )


class EligibilityQuestionDoc(_Model):
    code: Code
    text: Text = Field(description="the question in English, answered yes before randomizing")
    text_fr: Text | None = Field(default=None, description="the question in French")


class UnscheduledDoc(_Model):
    allowed: bool = Field(
        default=False, description="whether kits may be dispensed outside the schedule"
    )
    kit_rule: str = Field(
        default="last_visit",
        description=(
            "last_visit: the kit type of the subject's arm at the latest scheduled visit "
            "dispensed, in the weight band's quantity"
        ),
    )
    max_per_subject: int | None = Field(
        default=None, ge=1, le=99, description="unscheduled dispensations a subject may have"
    )


class StudyDoc(_Model):
    slug: Slug
    title: Text
    protocol: Text
    description: str = ""
    pooled_with: list[Slug] = Field(default_factory=list)
    arms: list[ArmDoc]
    allocation_ratio: dict[Code, int]
    stratification_factors: list[FactorDoc] = Field(default_factory=list)
    depots: list[DepotDoc]
    sites: list[SiteDoc]
    visits: list[VisitDoc]
    kit_types: list[KitTypeDoc]
    dispensing: DispensingDoc
    randomization: RandomizationDoc
    supply: SupplyDoc
    unblinding: UnblindingDoc
    subjects: SubjectsDoc | None = None
    unscheduled: UnscheduledDoc | None = None
    eligibility: list[EligibilityQuestionDoc] = Field(
        default_factory=list,
        description="questions the randomizing user must answer yes (none: no attestation)",
    )
