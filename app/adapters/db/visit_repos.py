"""Missed and held visits (table visit_event) and the due view's reading of a site's subjects.

Nothing here reads an arm or a kit type. A visit is recorded once: the caller holds the
subject's row (for update), and unique(subject_pk, visit) backs it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.adapters.db import memo
from app.adapters.db.models import DispensationRow, SiteRow, SubjectRow, VisitEventRow
from app.domain.schedule import VisitKind
from app.domain.subjects import Subject, SubjectStatus
from app.services.ports import SubjectVisits, VisitRecord


def _record(row: VisitEventRow) -> VisitRecord:
    return VisitRecord(row.visit, VisitKind(row.kind), row.reason, row.recorded_at, row.recorded_by)


class SqlVisitRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def recorded(self, subject: Subject) -> list[VisitRecord]:
        rows = self._session.scalars(
            select(VisitEventRow)
            .where(VisitEventRow.subject_pk == subject.pk)
            .order_by(VisitEventRow.id)
        )
        return [_record(row) for row in rows]

    def record(
        self, subject: Subject, visit: str, kind: VisitKind, reason: str, at: datetime, by: str
    ) -> VisitRecord:
        row = VisitEventRow(
            subject_pk=subject.pk,
            visit=visit,
            kind=kind.value,
            reason=reason,
            recorded_at=at,
            recorded_by=by,
        )
        self._session.add(row)
        self._session.flush()
        return _record(row)

    def on_treatment(self, study: str, site: str) -> list[SubjectVisits]:
        try:
            study_id = memo.study_id(self._session, study)
        except LookupError:
            return []
        subjects = self._session.execute(
            select(SubjectRow.id, SubjectRow.subject_code, SubjectRow.randomized_at)
            .join(SiteRow, SiteRow.id == SubjectRow.site_id)
            .where(
                SubjectRow.study_id == study_id,
                SiteRow.code == site,
                SubjectRow.status == SubjectStatus.RANDOMIZED.value,
                SubjectRow.randomized_at.is_not(None),
            )
            .order_by(SubjectRow.subject_code)
        ).all()
        pks = [pk for pk, _code, _at in subjects]
        if not pks:
            return []
        dispensed: dict[int, set[str]] = {pk: set() for pk in pks}
        for pk, visit in self._session.execute(
            select(DispensationRow.subject_pk, DispensationRow.visit).where(
                DispensationRow.subject_pk.in_(pks)
            )
        ):
            dispensed[pk].add(visit)
        recorded: dict[int, dict[str, VisitKind]] = {pk: {} for pk in pks}
        for pk, visit, kind in self._session.execute(
            select(VisitEventRow.subject_pk, VisitEventRow.visit, VisitEventRow.kind).where(
                VisitEventRow.subject_pk.in_(pks)
            )
        ):
            recorded[pk][visit] = VisitKind(kind)
        return [
            SubjectVisits(code, at, frozenset(dispensed[pk]), recorded[pk])
            for pk, code, at in subjects
            if at is not None
        ]
