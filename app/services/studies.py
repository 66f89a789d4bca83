"""Study use cases: load or update a definition, read what a caller may see."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.domain.audit import AuditEvent
from app.domain.errors import (
    AllocationChangeRefused,
    Conflict,
    InvalidStudyDefinition,
    StudyNotFound,
)
from app.domain.study import Study, allocation_changes, study_problems
from app.services.enrolment import keep_activation
from app.services.ports import StoredStudy, UnitOfWork


@dataclass(frozen=True, slots=True)
class LoadResult:
    slug: str
    version: int
    created: bool
    changed: bool
    changed_sections: tuple[str, ...]
    # Known sites whose `active` in the file differs from the stored activation, which wins
    # (`iwrs sites activate` / `deactivate`; app.services.enrolment).
    activation_kept: tuple[str, ...] = ()


def _changed_sections(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    keys = sorted(set(old) | set(new))
    return tuple(k for k in keys if old.get(k) != new.get(k))


def load_study(
    uow: UnitOfWork, study: Study, document: Mapping[str, Any], sha256: str
) -> LoadResult:
    """Create or update a study from its validated definition, in one audited transaction.

    Once anyone is randomized, what decides allocation (arms, ratio, strata, method) is
    frozen, and a site that has subjects cannot be removed (deactivate it instead). A site's
    `active` in the file applies when the site is first loaded; afterwards its stored
    activation wins (it changes only by `set_site_active`, audited).
    """
    problems = study_problems(study)
    if problems:
        raise InvalidStudyDefinition(
            f"study {study.slug!r} contradicts itself", [str(p) for p in problems]
        )
    with uow:
        existing = uow.studies.get(study.slug, for_update=True)
        if existing is not None and existing.sha256 == sha256:
            return LoadResult(study.slug, existing.version, False, False, ())
        kept: tuple[str, ...] = ()
        if existing is not None:
            _check_update_allowed(uow, existing, study)
            study, document, kept = keep_activation(existing, study, document)
            if document == existing.document:
                return LoadResult(study.slug, existing.version, False, False, (), kept)
        version = 1 if existing is None else existing.version + 1
        uow.studies.save(study, document, sha256, version)
        sections = _changed_sections(existing.document if existing else {}, document)
        uow.record(
            AuditEvent(
                action="study.created" if existing is None else "study.updated",
                entity_type="study",
                entity_id=study.slug,
                study=study.slug,
                before=None
                if existing is None
                else {"version": existing.version, "sha256": existing.sha256},
                after={
                    "version": version,
                    "sha256": sha256,
                    "sites": sorted(s.code for s in study.sites),
                    "changed_sections": list(sections),
                    **({"activation_kept": list(kept)} if kept else {}),
                },
            )
        )
        uow.commit()
    return LoadResult(study.slug, version, existing is None, True, sections, kept)


def _check_update_allowed(uow: UnitOfWork, existing: StoredStudy, study: Study) -> None:
    if uow.studies.randomized_count(study.slug) > 0:
        changes = allocation_changes(existing.study, study)
        if changes:
            raise AllocationChangeRefused(
                f"study {study.slug!r} has randomized subjects; refusing to change "
                + "; ".join(changes)
            )
    kept = {s.code for s in study.sites}
    dropped = sorted(uow.studies.sites_with_subjects(study.slug) - kept)
    if dropped:
        raise Conflict(
            f"sites {dropped} have subjects and cannot be removed; deactivate them instead "
            "(iwrs sites deactivate)"
        )


def list_studies(uow: UnitOfWork, visible: frozenset[str] | None) -> list[StoredStudy]:
    """The studies the caller may see (`visible` None: all of them)."""
    with uow:
        return [s for s in uow.studies.list() if visible is None or s.slug in visible]


def get_study(uow: UnitOfWork, slug: str, visible: frozenset[str] | None) -> StoredStudy:
    """One study, or `StudyNotFound` when it does not exist or the caller may not see it."""
    if visible is not None and slug not in visible:
        raise StudyNotFound(f"no study {slug!r}")
    with uow:
        stored = uow.studies.get(slug)
    if stored is None:
        raise StudyNotFound(f"no study {slug!r}")
    return stored


def set_mode(uow: UnitOfWork, slug: str, mode: str | None) -> str:
    """Switch a study between test (uat) and live; audited. None only reads the mode."""
    if mode is not None and mode not in ("live", "uat"):
        raise Conflict(f"mode must be 'live' or 'uat', not {mode!r}")
    with uow:
        if not uow.studies.exists(slug):
            raise StudyNotFound(f"no study {slug!r}")
        current = uow.studies.mode(slug)
        if mode is None or mode == current:
            return current
        uow.studies.set_mode(slug, mode)
        uow.record(
            AuditEvent(
                action="study.mode_changed",
                entity_type="study",
                entity_id=slug,
                study=slug,
                before={"mode": current},
                after={"mode": mode},
            )
        )
        uow.commit()
    return mode


@dataclass(frozen=True, slots=True)
class StudyStatus:
    mode: str
    list_version: int | None
    strata_running_low: tuple[str, ...]
    strata_exhausted: tuple[str, ...]


def study_status(uow: UnitOfWork, slug: str) -> StudyStatus:
    """The study's mode and the state of its active list: strata running low or exhausted."""
    with uow:
        mode = uow.studies.mode(slug)
        info = uow.lists.active(slug, mode)
        if info is None:
            return StudyStatus(mode, None, (), ())
        strata = uow.lists.strata(info)
    low = tuple(s.key for s in strata if s.low_warned and s.next_sequence <= s.length)
    exhausted = tuple(s.key for s in strata if s.next_sequence > s.length)
    return StudyStatus(mode, info.version, low, exhausted)
