"""The daily resupply review's reads and its once-a-day claim."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.adapters.db import memo
from app.adapters.db.models import (
    DispensationRow,
    OutboxRow,
    ResupplyReviewRow,
    ShipmentKitRow,
    ShipmentRow,
    SiteRow,
    SubjectRow,
    VisitEventRow,
)
from app.adapters.db.randomization_repos import _subject
from app.domain.subjects import SubjectStatus
from app.services.ports import SubjectOnTreatment


class SqlResupplyRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def claim_review(self, study: str, on: date, at: datetime) -> bool:
        """Whether this caller is the first to review the study on `on` (the claim is kept
        with the caller's transaction, so a review rolled back can be run again)."""
        values = {"study_id": memo.study_id(self._session, study), "review_date": on}
        dialect = self._session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            insert(ResupplyReviewRow)
            .values(**values, reviewed_at=at)
            .on_conflict_do_nothing(index_elements=["study_id", "review_date"])
            .returning(ResupplyReviewRow.study_id)
        )
        # The row inserted comes back; a conflict returns none (rowcount is not reliable for
        # an ORM-enabled INSERT on psycopg).
        return self._session.execute(statement).first() is not None

    def on_treatment(self, study: str, site: str) -> list[SubjectOnTreatment]:
        """The site's randomized subjects (not ended), each with the visits settled (dispensed,
        or recorded missed or held) and the quantity of their last dispensation."""
        study_id = memo.study_id(self._session, study)
        rows = self._session.execute(
            select(SubjectRow)
            .join(SiteRow, SiteRow.id == SubjectRow.site_id)
            .where(
                SubjectRow.study_id == study_id,
                SiteRow.code == site,
                SubjectRow.status == SubjectStatus.RANDOMIZED.value,
            )
            .order_by(SubjectRow.id)
        ).scalars()
        subjects = {row.id: _subject(row, study, site) for row in rows}
        if not subjects:
            return []
        visits: dict[int, set[str]] = {pk: set() for pk in subjects}
        last: dict[int, tuple[datetime, int, int]] = {}
        for pk, visit, quantity, at, row_id in self._session.execute(
            select(
                DispensationRow.subject_pk,
                DispensationRow.visit,
                DispensationRow.quantity,
                DispensationRow.dispensed_at,
                DispensationRow.id,
            ).where(DispensationRow.subject_pk.in_(list(subjects)))
        ):
            visits[pk].add(visit)
            if pk not in last or (at, row_id) > last[pk][:2]:
                last[pk] = (at, row_id, quantity)
        # A visit recorded missed or held is settled too: it will never be dispensed.
        for pk, visit in self._session.execute(
            select(VisitEventRow.subject_pk, VisitEventRow.visit).where(
                VisitEventRow.subject_pk.in_(list(subjects))
            )
        ):
            visits[pk].add(visit)
        return [
            SubjectOnTreatment(subject, frozenset(visits[pk]), last[pk][2] if pk in last else 0)
            for pk, subject in subjects.items()
        ]

    def shipped_to(self, study: str, site: str) -> int:
        """Kits ever shipped to the site (every shipment, received or not)."""
        return int(
            self._session.scalar(
                select(func.count())
                .select_from(ShipmentKitRow)
                .join(ShipmentRow, ShipmentRow.id == ShipmentKitRow.shipment_id)
                .join(SiteRow, SiteRow.id == ShipmentRow.site_id)
                .where(
                    ShipmentRow.study_id == memo.study_id(self._session, study),
                    SiteRow.code == site,
                )
            )
            or 0
        )

    def had_refusal(self, study: str, site: str, but: str) -> bool:
        """Whether a visit at the site other than `but` was ever refused for supply (its
        notification)."""
        found = self._session.scalar(
            select(OutboxRow.id)
            .where(
                OutboxRow.study_id == memo.study_id(self._session, study),
                OutboxRow.kind == "supply.visit_refused",
                OutboxRow.payload["site"].as_string() == site,
                OutboxRow.payload["visit"].as_string() != but,
            )
            .limit(1)
        )
        return found is not None
