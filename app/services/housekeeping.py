"""The server's periodic housekeeping: kits past their expiry marked expired, then each
study's daily resupply review (once a UTC date, whichever process runs first), then the
records kept only for a while deleted: idempotency records past their retention, and token
throttle records that count no failure any more (one audit event in the system chain with
the counts, when there were any)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from app.domain.audit import AuditEvent
from app.domain.clients import WINDOW
from app.services.ports import ShipmentRecord, UnitOfWork
from app.services.resupply import SupplyBusy, daily_review
from app.services.supply import expire_kits

log = logging.getLogger("iwrs.supply")

_T = TypeVar("_T")

IDEMPOTENCY_RETENTION = timedelta(hours=24)  # the default of IWRS_IDEMPOTENCY_RETENTION_SECONDS


@dataclass(frozen=True, slots=True)
class Housekept:
    expired: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # study, place
    shipped: dict[str, list[ShipmentRecord]] = field(default_factory=dict)  # by study
    purged: dict[str, int] = field(default_factory=dict)  # records deleted, by kind


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


def purge_expired(uow: UnitOfWork, idempotency_retention: timedelta) -> dict[str, int]:
    """Delete the idempotency records past their retention and the throttle records that
    count nothing any more, in one transaction; audited (counts only) when any were."""
    with uow:
        now = uow.clock.now()
        purged = {
            "idempotency_records": uow.idempotency_records.purge(now - idempotency_retention),
            "throttle_records": uow.throttle.purge(now, now - WINDOW),
        }
        if not any(purged.values()):
            return purged
        uow.record(
            AuditEvent(
                action="records.purged",
                entity_type="housekeeping",
                entity_id="expired-records",
                after={**purged, "idempotency_retention_s": idempotency_retention.total_seconds()},
            )
        )
        uow.commit()
    return purged


def housekeeping(
    uow_factory: Callable[[], UnitOfWork],
    idempotency_retention: timedelta = IDEMPOTENCY_RETENTION,
) -> Housekept:
    """Expire, then review resupply (so an expired kit is not counted as stock), then purge."""
    return Housekept(
        _each_study(uow_factory, expire_kits, "kit expiry"),
        _each_study(uow_factory, daily_review, "resupply review"),
        purge_expired(uow_factory(), idempotency_retention),
    )
