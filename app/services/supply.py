"""Drug supply use cases: kit lists, shipments, receipt, dispensing, resupply."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from app.domain.study import Study
from app.domain.subjects import Subject
from app.services.ports import UnitOfWork


@dataclass(frozen=True, slots=True)
class DispensedKit:
    kit_number: str
    lot: str
    expiry_date: date


@dataclass(frozen=True, slots=True)
class Dispensation:
    subject_id: str
    visit: str
    kits: tuple[DispensedKit, ...]
    dispensed_at: datetime


def first_visit_servable(
    uow: UnitOfWork, study: Study, site: str, weight_kg: Decimal | None
) -> bool:
    """Whether the site can serve the first visit whatever the arm (inside an open uow)."""
    raise NotImplementedError


def dispense(
    uow: UnitOfWork,
    study: Study,
    subject: Subject,
    arm: str,
    visit: str,
    weight_kg: Decimal,
    on_date: date,
) -> Dispensation:
    """Pick and dispense the visit's kits inside an open uow (audited; no commit)."""
    raise NotImplementedError
