"""Subjects: registration, then exactly one randomization, then completion or discontinuation.

`status` moves registered -> randomized -> (completed | discontinued). A subject is
randomized only when every stratification factor has a known level. Only a randomized
subject ends, once, at `ended_at`; an ended subject is never dispensed to again. A
discontinuation names one of the study's reasons ("other" with a text). None of these
rules looks at the arm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.domain.errors import Conflict, DomainError, NotFound
from app.domain.study import Study


class SubjectStatus(StrEnum):
    REGISTERED = "registered"
    RANDOMIZED = "randomized"
    COMPLETED = "completed"
    DISCONTINUED = "discontinued"
    SCREEN_FAILED = "screen_failed"  # registered, never randomized, and will not be


class SubjectNotFound(NotFound):
    """No such subject in the study (or not at the caller's sites)."""

    code = "subject_not_found"


class SubjectAlreadyRegistered(Conflict):
    """A subject with this id is registered in the study already."""

    code = "subject_already_registered"


class SubjectAlreadyRandomized(Conflict):
    """The subject was randomized already; a subject is randomized exactly once."""

    code = "subject_already_randomized"


class SubjectNotRandomized(Conflict):
    """The subject is not randomized (yet, or any more)."""

    code = "subject_not_randomized"


class SubjectAlreadyEnded(Conflict):
    """The subject completed or discontinued already; a subject ends once."""

    code = "subject_already_ended"


class SubjectNotOnTreatment(Conflict):
    """The subject completed or discontinued: nothing is dispensed to them any more."""

    code = "subject_not_on_treatment"


class InvalidDiscontinuationReason(DomainError):
    """The reason is not one of the study's, or "other" comes without a text."""

    code = "invalid_discontinuation_reason"


class SiteNotActive(Conflict):
    """The site is not active in the study."""

    code = "site_not_active"


class InvalidStratum(DomainError):
    """A stratification factor is missing, unknown, or has an unknown level."""

    code = "invalid_stratum"


class StratumExhausted(Conflict):
    """The stratum's list has no free slot left; a statistician must extend it."""

    code = "stratum_exhausted"


class NoActiveList(Conflict):
    """The study has no randomization list for its current mode."""

    code = "randomization_list_missing"


@dataclass(frozen=True, slots=True)
class Subject:
    pk: int
    study: str
    subject_id: str
    site: str
    status: SubjectStatus
    strata: Mapping[str, str]
    registered_at: datetime
    randomized_at: datetime | None = None
    randomization_number: int | None = None
    unblinded: bool = False
    mode: str = "live"
    ended_at: datetime | None = None
    end_reason: str | None = None
    rescreen_of: int | None = None  # the pk of the earlier registration this one re-screens
    strata_corrected: Mapping[str, str] | None = None  # `strata` stays as randomized
    eligibility: Mapping[str, bool] | None = None


def check_strata(study: Study, strata: Mapping[str, str]) -> dict[str, str]:
    """The strata as given, checked: every factor present with one of its levels, no other."""
    problems: list[str] = []
    for factor in study.factors:
        level = strata.get(factor.code)
        if level is None:
            problems.append(f"missing factor {factor.code!r}")
        elif level not in factor.level_codes():
            problems.append(f"unknown level {level!r} for factor {factor.code!r}")
    known = {f.code for f in study.factors}
    problems.extend(f"unknown factor {name!r}" for name in sorted(set(strata) - known))
    if problems:
        raise InvalidStratum("; ".join(problems))
    return {f.code: strata[f.code] for f in study.factors}


ENDED = frozenset({SubjectStatus.COMPLETED, SubjectStatus.DISCONTINUED})
OTHER_REASON = "other"


def check_can_end(subject: Subject) -> None:
    """A subject ends once, and only after its randomization."""
    if subject.status in ENDED:
        raise SubjectAlreadyEnded(f"subject {subject.subject_id!r} has ended already")
    if subject.status is not SubjectStatus.RANDOMIZED:
        raise SubjectNotRandomized(f"subject {subject.subject_id!r} is not randomized")


def check_on_treatment(subject: Subject) -> None:
    """Refuse to dispense to an ended subject (whatever the arm)."""
    if subject.status in ENDED:
        raise SubjectNotOnTreatment(
            f"subject {subject.subject_id!r} is {subject.status.value}; nothing is dispensed"
        )


def discontinuation_reason(study: Study, reason: str, detail: str | None) -> str | None:
    """The detail to keep (stripped, None when empty) once the reason is checked against the
    study's list; "other" needs a detail."""
    if reason not in study.discontinuation_reasons:
        raise InvalidDiscontinuationReason(
            f"reason {reason!r} is not one of {', '.join(study.discontinuation_reasons)}"
        )
    text = (detail or "").strip() or None
    if reason == OTHER_REASON and text is None:
        raise InvalidDiscontinuationReason("reason 'other' needs a detail")
    return text
