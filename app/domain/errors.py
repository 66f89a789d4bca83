"""Domain errors: each has a stable machine `code` that the API renders as problem+json.

Messages name ids (studies, sites, subjects, kits), never an arm or a kit type.
"""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the trial refused the request."""

    code: str = "domain_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The record does not exist or is outside the caller's scope."""

    code = "not_found"


class StudyNotFound(NotFound):
    """No study by that slug (or not visible to the caller)."""

    code = "study_not_found"


class SiteNotFound(NotFound):
    """No site by that code in the study."""

    code = "site_not_found"


class InvalidStudyDefinition(DomainError):
    """The study definition breaks a rule of its own (unknown arm, missing dispensing...)."""

    code = "invalid_study_definition"

    def __init__(self, detail: str, problems: list[str] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or [detail]


class AllocationChangeRefused(DomainError):
    """The study has randomized subjects, so what decides allocation may not change."""

    code = "allocation_change_refused"


class Conflict(DomainError):
    """The request conflicts with the current state."""

    code = "conflict"
