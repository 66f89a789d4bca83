"""Enrolment control's rows: the caps (table enrolment_cap), a site's enrolment state
(site.enrolment_open) and the randomized subjects the caps count. Every query is scoped to
its study, so a cap or a site of another study is simply not found."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from app.adapters.db import hot, memo
from app.adapters.db.models import EnrolmentCapRow, SiteRow, SubjectRow
from app.domain.enrolment import CapScope, Enrollee, EnrolmentCap
from app.services.ports import SiteState


def _cap(row: EnrolmentCapRow) -> EnrolmentCap:
    return EnrolmentCap(
        scope=CapScope(row.scope),
        target=row.target,
        warning_at=row.warning_at,
        cap=row.cap,
        set_at=row.set_at,
        set_by=row.set_by,
        id=row.id,
    )


class SqlEnrolmentRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _study_id(self, slug: str) -> int:
        # What this transaction deferred (a lock, as a rule) goes first, in its order.
        hot.flush(self._session)
        return memo.study_id(self._session, slug)

    # --- caps ------------------------------------------------------------------------------

    def caps(self, study: str) -> list[EnrolmentCap]:
        rows = self._session.scalars(
            select(EnrolmentCapRow)
            .where(EnrolmentCapRow.study_id == self._study_id(study))
            .order_by(EnrolmentCapRow.id)
        )
        return [_cap(row) for row in rows]

    def lock_caps(self, study: str, ids: Sequence[int]) -> list[EnrolmentCap]:
        if not ids:
            return []
        rows = self._session.scalars(
            select(EnrolmentCapRow)
            .where(
                EnrolmentCapRow.study_id == self._study_id(study),
                EnrolmentCapRow.id.in_(sorted(ids)),
            )
            .order_by(EnrolmentCapRow.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return [_cap(row) for row in rows]

    def _cap_row(self, study: str, scope: CapScope, target: str) -> EnrolmentCapRow | None:
        return self._session.scalars(
            select(EnrolmentCapRow)
            .where(
                EnrolmentCapRow.study_id == self._study_id(study),
                EnrolmentCapRow.scope == scope.value,
                EnrolmentCapRow.target == target,
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()

    def cap(self, study: str, scope: CapScope, target: str) -> EnrolmentCap | None:
        row = self._cap_row(study, scope, target)
        return None if row is None else _cap(row)

    def save_cap(self, study: str, cap: EnrolmentCap) -> EnrolmentCap:
        row = self._cap_row(study, cap.scope, cap.target)
        if row is None:
            row = EnrolmentCapRow(
                study_id=self._study_id(study), scope=cap.scope.value, target=cap.target
            )
            self._session.add(row)
        assert cap.set_at is not None
        assert cap.set_by is not None
        row.warning_at, row.cap = cap.warning_at, cap.cap
        row.set_at, row.set_by = cap.set_at, cap.set_by
        self._session.flush()
        return _cap(row)

    def delete_cap(self, study: str, cap: EnrolmentCap) -> None:
        self._session.execute(
            delete(EnrolmentCapRow).where(
                EnrolmentCapRow.study_id == self._study_id(study), EnrolmentCapRow.id == cap.id
            )
        )

    # --- sites -----------------------------------------------------------------------------

    def site(self, study: str, code: str, *, for_update: bool = False) -> SiteState | None:
        query = select(SiteRow.code, SiteRow.country, SiteRow.active, SiteRow.enrolment_open).where(
            SiteRow.study_id == self._study_id(study), SiteRow.code == code
        )
        if for_update:
            query = query.with_for_update()
        found = self._session.execute(query).first()
        return None if found is None else SiteState(*found)

    def set_enrolment_open(self, study: str, code: str, is_open: bool) -> None:
        self._session.execute(
            update(SiteRow)
            .where(SiteRow.study_id == self._study_id(study), SiteRow.code == code)
            .values(enrolment_open=is_open)
        )

    # --- the randomized subjects -------------------------------------------------------------

    def _randomized(self, study: str, mode: str, query: Select[Any]) -> Select[Any]:
        return query.join(SiteRow, SiteRow.id == SubjectRow.site_id).where(
            SubjectRow.study_id == self._study_id(study),
            SubjectRow.mode == mode,
            SubjectRow.randomized_at.is_not(None),
        )

    def count_randomized(
        self,
        study: str,
        mode: str,
        *,
        site: str | None = None,
        country: str | None = None,
        levels: Mapping[str, str] | None = None,
    ) -> int:
        where = []
        if site is not None:
            where.append(SiteRow.code == site)
        if country is not None:
            where.append(SiteRow.country == country)
        if not levels:
            query = self._randomized(study, mode, select(func.count()).select_from(SubjectRow))
            return int(self._session.scalar(query.where(*where)) or 0)
        # The levels are JSON: compared here, the same way on SQLite and PostgreSQL.
        query = self._randomized(study, mode, select(SubjectRow.strata)).where(*where)
        wanted = dict(levels)
        return sum(
            1
            for strata in self._session.scalars(query)
            if all(strata.get(k) == v for k, v in wanted.items())
        )

    def enrollees(self, study: str, mode: str) -> list[Enrollee]:
        query = self._randomized(
            study, mode, select(SiteRow.code, SiteRow.country, SubjectRow.strata)
        ).order_by(SubjectRow.id)
        return [
            Enrollee(code, country, dict(strata or {}))
            for code, country, strata in self._session.execute(query)
        ]
