"""The server's periodic housekeeping: kits past their expiry marked expired, then each
study's daily resupply review (once a UTC date, whichever process runs first)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from app.services.ports import ShipmentRecord, UnitOfWork
from app.services.resupply import SupplyBusy, daily_review
from app.services.supply import expire_kits

log = logging.getLogger("iwrs.supply")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Housekept:
    expired: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # study, place
    shipped: dict[str, list[ShipmentRecord]] = field(default_factory=dict)  # by study


def _each_study(
    uow_factory: Callable[[], UnitOfWork],
    run: Callable[[UnitOfWork, str], _T | None],
    what: str,
) -> dict[str, _T]:
    """`run` for every study, each in its own unit of work; what it found, by study. A study
    whose kits moved meanwhile is left for the next run."""
    with uow_factory() as uow:
        slugs = [stored.slug for stored in uow.studies.list()]
    found: dict[str, _T] = {}
    for slug in slugs:
        try:
            result = run(uow_factory(), slug)
        except SupplyBusy:
            log.info(
                "housekeeping deferred: kits moved meanwhile", extra={"study": slug, "task": what}
            )
            continue
        if result:
            found[slug] = result
    return found


def housekeeping(uow_factory: Callable[[], UnitOfWork]) -> Housekept:
    """Expire, then review resupply (so an expired kit is not counted as stock)."""
    return Housekept(
        _each_study(uow_factory, expire_kits, "kit expiry"),
        _each_study(uow_factory, daily_review, "resupply review"),
    )
