"""Subjects: registration, then exactly one randomization, then completion or discontinuation.

`status` moves registered -> randomized -> (completed | discontinued), or registered ->
screen_failed. A subject is randomized only when every stratification factor has a known
level, when it did not fail screening, and when every eligibility question of the study is
answered yes. Only a randomized subject completes or discontinues, once, at `ended_at`; only
a registered one fails screening, once; an ended subject is never dispensed to again. A
discontinuation or a screen failure names one of the study's reasons ("other" with a text).

Re-screening: where the study allows it, a screen-failed subject is registered again under a
new id at the same site, linked to the earlier registration (`rescreen_of`); a registration
is re-screened at most once, and a chain holds at most `max_rescreens` re-screenings.

Stratum correction: a wrongly entered level is corrected with a reason. Before
randomization the registration's level is replaced (randomization uses it); after, `strata`
keeps the levels used to randomize (the allocation never changes: analysed as randomized,
ICH E9) and `strata_corrected` holds every level as corrected. None of these rules looks at
the arm.

Subject ids are unique in a study, and a registration must not tell a caller about subjects
at sites it may not see. A caller registering an id that is taken gets
`subject_already_registered` only when it may see the subject that holds it (its sites
include that subject's site: an EDC client of the study, an investigator of that site).
Otherwise it gets `subject_id_unavailable`, with the same status and the same detail as for
an id *reserved* to a site outside its scope: an id that begins with the code of such a site
of the study followed by `-`, `_` or `.` (`FR02-014` for an FR01 investigator), taken or
not. So, for ids numbered by site, every id of another site gets the same refusal whether
it exists or not. An id carrying no other site's code can only be refused because a subject
holds it somewhere the caller cannot see: a study numbering subjects without site codes
still tells a site that an id is in use (never where, nor anything of it), and each probe
by a fresh id registers a real, audited subject at the caller's site.
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


class SubjectIdUnavailable(Conflict):
    """This subject id cannot be registered by this caller (taken where the caller cannot see,
    or reserved to another site); choose another id."""

    code = "subject_id_unavailable"


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


class SubjectScreenFailed(Conflict):
    """The subject failed screening: never randomized, never corrected; re-screen it under
    a new registration where the study allows."""

    code = "subject_screen_failed"


class InvalidScreenFailureReason(DomainError):
    """The reason is not one of the study's screen failure reasons, or "other" comes
    without a text."""

    code = "invalid_screen_failure_reason"


class RescreeningNotAllowed(Conflict):
    """The study does not allow a screen-failed subject to be registered again."""

    code = "rescreening_not_allowed"


class RescreenOfNotFound(DomainError):
    """`rescreen_of` names no subject of the study at that site among the caller's."""

    code = "rescreen_of_not_found"


class RescreenOfNotScreenFailed(Conflict):
    """Only a screen-failed subject is re-screened."""

    code = "rescreen_of_not_screen_failed"


class SubjectAlreadyRescreened(Conflict):
    """The earlier registration was re-screened already; re-screen the latest one."""

    code = "subject_already_rescreened"


class RescreenLimitReached(Conflict):
    """The chain of registrations holds as many re-screenings as the study allows."""

    code = "rescreen_limit_reached"


class EligibilityNotConfirmed(DomainError):
    """An eligibility question of the study is unanswered or not answered yes, or an
    answer names no question of the study."""

    code = "eligibility_not_confirmed"


class InvalidCorrection(DomainError):
    """A correction of a subject's record comes without its reason."""

    code = "invalid_correction"


class StratumUnchanged(DomainError):
    """The corrected level is the subject's level already."""

    code = "stratum_unchanged"


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


_ID_SEPARATORS = "-_."


def reserved_site(study: Study, subject_id: str) -> str | None:
    """The site an id is reserved to by its prefix (the site's code, then `-`, `_` or `.`,
    in any case), or None."""
    upper = subject_id.upper()
    for site in study.sites:
        code = site.code.upper()
        if len(upper) > len(code) and upper.startswith(code) and upper[len(code)] in _ID_SEPARATORS:
            return site.code
    return None


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


ENDED = frozenset(
    {SubjectStatus.COMPLETED, SubjectStatus.DISCONTINUED, SubjectStatus.SCREEN_FAILED}
)
OTHER_REASON = "other"


def check_randomizable(subject: Subject) -> None:
    """Only a registered subject is randomized: never a screen failure, never twice."""
    if subject.status is SubjectStatus.SCREEN_FAILED:
        raise SubjectScreenFailed(f"subject {subject.subject_id!r} failed screening")
    if subject.status is not SubjectStatus.REGISTERED:
        raise SubjectAlreadyRandomized(f"subject {subject.subject_id!r} is randomized already")


def check_can_screen_fail(subject: Subject) -> None:
    """Only a registered (never randomized) subject fails screening, once."""
    if subject.status in ENDED:
        raise SubjectAlreadyEnded(f"subject {subject.subject_id!r} has ended already")
    if subject.status is not SubjectStatus.REGISTERED:
        raise SubjectAlreadyRandomized(f"subject {subject.subject_id!r} is randomized already")


def screen_failure_reason(study: Study, reason: str, detail: str | None) -> str | None:
    """The detail to keep once the reason is checked against the study's screen failure
    reasons; "other" needs a detail."""
    return _checked_reason(study.screen_failure_reasons, reason, detail, InvalidScreenFailureReason)


def check_rescreen(
    study: Study,
    earlier: Subject | None,
    rescreens_before: int,
    rescreened_already: bool,
) -> Subject:
    """May a new registration re-screen `earlier` (found at the registering site among the
    caller's, else None)? `rescreens_before`: re-screenings in the chain up to `earlier`."""
    if not study.rescreening:
        raise RescreeningNotAllowed(f"study {study.slug!r} does not allow re-screening")
    if earlier is None:
        raise RescreenOfNotFound("rescreen_of names no subject of yours at this site")
    if earlier.status is not SubjectStatus.SCREEN_FAILED:
        raise RescreenOfNotScreenFailed(
            f"subject {earlier.subject_id!r} is {earlier.status.value}, not screen_failed"
        )
    if rescreened_already:
        raise SubjectAlreadyRescreened(
            f"subject {earlier.subject_id!r} was re-screened already; re-screen the latest"
        )
    if rescreens_before + 1 > study.max_rescreens:
        raise RescreenLimitReached(
            f"study {study.slug!r} allows {study.max_rescreens} re-screening(s) per subject"
        )
    return earlier


def check_eligibility(study: Study, answers: Mapping[str, bool] | None) -> dict[str, bool]:
    """The answers to keep, in the study's order: every question answered yes (True), and
    no answer to a question the study does not ask."""
    given = dict(answers or {})
    asked = [q.code for q in study.eligibility]
    problems = [f"unknown question {code!r}" for code in sorted(set(given) - set(asked))]
    problems += [f"question {code!r} is unanswered" for code in asked if code not in given]
    problems += [
        f"question {code!r} is not answered yes"
        for code in asked
        if code in given and given[code] is not True
    ]
    if problems:
        raise EligibilityNotConfirmed("; ".join(problems))
    return {code: True for code in asked}


def corrected_strata(study: Study, subject: Subject, factor: str, level: str) -> dict[str, str]:
    """Every level of the subject once `factor` is corrected to `level`: from the levels as
    corrected so far (else as registered). Refused for a screen failure, for an unknown
    factor or level, and when nothing would change."""
    if subject.status is SubjectStatus.SCREEN_FAILED:
        raise SubjectScreenFailed(f"subject {subject.subject_id!r} failed screening")
    found = study.factor(factor)
    if found is None:
        raise InvalidStratum(f"unknown factor {factor!r}")
    if level not in found.level_codes():
        raise InvalidStratum(f"unknown level {level!r} for factor {factor!r}")
    current = dict(subject.strata_corrected or subject.strata)
    if current.get(factor) == level:
        raise StratumUnchanged(f"factor {factor!r} is {level!r} already")
    return {**current, factor: level}


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
    return _checked_reason(
        study.discontinuation_reasons, reason, detail, InvalidDiscontinuationReason
    )


def _checked_reason(
    reasons: tuple[str, ...], reason: str, detail: str | None, error: type[DomainError]
) -> str | None:
    if reason not in reasons:
        raise error(f"reason {reason!r} is not one of {', '.join(reasons)}")
    text = (detail or "").strip() or None
    if reason == OTHER_REASON and text is None:
        raise error("reason 'other' needs a detail")
    return text
