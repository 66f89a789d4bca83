"""What one transaction has already read, shared by its repositories.

A randomization reads its study's row once (id, mode, lock) and each site's id once, instead
of once per repository. The memo lives in `Session.info`, so it ends with the unit of work;
a repository that changes the study's mode or lock updates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.adapters.db.models import StudyRow


@dataclass(frozen=True, slots=True)
class StudyState:
    mode: str
    locked_at: datetime | None
    locked_by: str | None


def ids(session: Session) -> dict[tuple[str, ...], int]:
    """("study", slug), ("site", slug, code), ("depot", slug, code) -> row id."""
    found: dict[tuple[str, ...], int] = session.info.setdefault("iwrs_ids", {})
    return found


_STUDY_ID = select(StudyRow.id).where(StudyRow.slug == bindparam("slug"))


def study_id(session: Session, slug: str) -> int:
    """The study's row id (LookupError when there is none), read once per transaction."""
    known = ids(session)
    if ("study", slug) not in known:
        found = session.execute(_STUDY_ID, {"slug": slug}).scalar()
        if found is None:
            raise LookupError(slug)
        known[("study", slug)] = found
    return known[("study", slug)]


def held(session: Session) -> dict[str, tuple[datetime, str] | None]:
    """Studies whose row this transaction holds share-locked, with their lock (if any)."""
    found: dict[str, tuple[datetime, str] | None] = session.info.setdefault("iwrs_study_held", {})
    return found


def states(session: Session) -> dict[str, StudyState]:
    found: dict[str, StudyState] = session.info.setdefault("iwrs_study_state", {})
    return found


def remember_study(session: Session, slug: str, row: Any) -> None:
    ids(session)[("study", slug)] = row.id
    states(session)[slug] = StudyState(row.mode, row.locked_at, row.locked_by)


def forget_study_state(session: Session, slug: str) -> None:
    states(session).pop(slug, None)
    held(session).pop(slug, None)
