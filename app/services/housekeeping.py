"""The server's periodic housekeeping: kits past their expiry marked expired, then each
study's daily resupply review (once a UTC date, whichever process runs first)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.services.ports import ShipmentRecord, UnitOfWork
from app.services.resupply import review_all_studies
from app.services.supply import expire_all_studies


@dataclass(frozen=True, slots=True)
class Housekept:
    expired: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # study, place
    shipped: dict[str, list[ShipmentRecord]] = field(default_factory=dict)  # by study


def housekeeping(uow_factory: Callable[[], UnitOfWork]) -> Housekept:
    """Expire, then review resupply (so an expired kit is not counted as stock)."""
    return Housekept(expire_all_studies(uow_factory), review_all_studies(uow_factory))
