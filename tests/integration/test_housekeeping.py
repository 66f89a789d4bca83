"""The server marks expired kits by itself (issue 7: nothing else would run `iwrs kits
expire` every day): a worker's housekeeping task expires them and resupplies the sites."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from app.adapters.api.app import create_app
from app.adapters.db import migrate
from app.adapters.db.models import AuditEventRow, AuthThrottleRow, IdempotencyRow, KitRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container, bootstrap
from app.domain.audit import SYSTEM_CHAIN
from app.domain.kits import KitStatus
from app.services import supply
from app.services.housekeeping import housekeeping
from app.services.studies import load_study
from app.settings import Settings
from tests.conftest import FAST_HASHER, STUDIES_DIR, TEST_ACTOR, FreshDatabases

STUDY = "iris-7a"


def _server_container(url: str, keys_dir: Path, clock: Path, every: float) -> Container:
    settings = Settings(
        database_url=url,
        keys_dir=keys_dir,
        simulation_clock_file=clock,
        housekeeping_seconds=every,
    )
    return bootstrap(settings, hasher=FAST_HASHER)


def _expired(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        kits = conn.scalar(
            select(func.count()).select_from(KitRow).where(KitRow.status == "expired")
        )
        events = conn.scalar(
            select(func.count())
            .select_from(AuditEventRow)
            .where(AuditEventRow.action == "kits.expired")
        )
    return int(kits or 0), int(events or 0)


@pytest.fixture
def aged(
    backend: str, fresh_databases: FreshDatabases, keys_dir: Path, tmp_path: Path
) -> tuple[str, Path]:
    """A database of its own with iris-7a and its kits, and a clock moved past the first
    lot's expiry."""
    database_url = fresh_databases.create(backend)
    engine_container = _server_container(database_url, keys_dir, tmp_path / "clock", 0)
    migrate.upgrade(engine_container.engine)
    study, document, sha = read_study_file(STUDIES_DIR / f"{STUDY}.toml")
    load_study(engine_container.uow(TEST_ACTOR), study, document, sha)
    supply.generate_kits(engine_container.uow(TEST_ACTOR), STUDY)
    engine_container.dispose()
    days = study.supply.lot_shelf_life_days + 1
    (tmp_path / "clock").write_text(str(days * 86400))
    return database_url, tmp_path / "clock"


def test_a_serving_worker_expires_aged_kits(aged: tuple[str, Path], keys_dir: Path) -> None:
    url, clock = aged
    container = _server_container(url, keys_dir, clock, 0.2)
    try:
        assert _expired(container.engine) == (0, 0)
        with TestClient(create_app(container)):
            deadline = time.monotonic() + 30
            while _expired(container.engine)[1] == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
        kits, events = _expired(container.engine)
        assert kits > 0
        assert events > 0
        study, _document, _sha = read_study_file(STUDIES_DIR / f"{STUDY}.toml")
        today = container.clock.now().date()
        with container.uow(TEST_ACTOR) as uow:
            # Nothing past its date is left where it could be shipped or dispensed.
            stock = [
                *(uow.supply.stock(STUDY, KitStatus.AT_DEPOT, depot=d.code) for d in study.depots),
                *(uow.supply.stock(STUDY, KitStatus.AT_SITE, site=s.code) for s in study.sites),
            ]
            assert sum(len(kits) for kits in stock) > 0
            assert all(c.expiry_date >= today for kits in stock for c in kits)
    finally:
        container.dispose()


def test_housekeeping_off_leaves_them(aged: tuple[str, Path], keys_dir: Path) -> None:
    url, clock = aged
    container = _server_container(url, keys_dir, clock, 0)
    try:
        with TestClient(create_app(container)):
            time.sleep(1.0)
        assert _expired(container.engine) == (0, 0)
    finally:
        container.dispose()


class TestPurge:
    """Records kept only for a while (issue 19): idempotency records past their retention
    and throttle records that count no failure any more are deleted, audited by counts."""

    def test_expired_records_are_purged_and_counted(self, container: Container) -> None:
        now = datetime.now(UTC)
        hour = timedelta(hours=1)
        with container.session_factory() as session:
            for key, age in (("old", 25 * hour), ("fresh", hour)):
                session.add(
                    IdempotencyRow(
                        principal="edc-1",
                        key=key,
                        fingerprint="f",
                        status_code=201,
                        response_body="{}",
                        created_at=now - age,
                    )
                )
            for key, first, locked in (
                ("lock-ended", now - hour, now - timedelta(minutes=1)),
                ("window-over", now - hour, None),
                ("locked", now - timedelta(minutes=5), now + timedelta(minutes=10)),
                ("counting", now - timedelta(minutes=5), None),
            ):
                session.add(
                    AuthThrottleRow(
                        key=key, failures=2, first_failure_at=first, locked_until=locked
                    )
                )
            session.commit()
        actor = container.system_actor("housekeeping")
        done = housekeeping(lambda: container.uow(actor), timedelta(hours=24))
        assert done.purged == {"idempotency_records": 1, "throttle_records": 2}
        with container.session_factory() as session:
            assert session.scalars(select(IdempotencyRow.key)).all() == ["fresh"]
            assert sorted(session.scalars(select(AuthThrottleRow.key))) == ["counting", "locked"]
            [event] = session.scalars(
                select(AuditEventRow).where(AuditEventRow.action == "records.purged")
            ).all()
        assert event.chain == SYSTEM_CHAIN
        assert event.actor_id == "system:housekeeping"
        assert event.after["idempotency_records"] == 1
        assert event.after["throttle_records"] == 2
        again = housekeeping(lambda: container.uow(actor), timedelta(hours=24))
        assert again.purged == {"idempotency_records": 0, "throttle_records": 0}
        with container.session_factory() as session:
            purges = session.scalars(
                select(AuditEventRow).where(AuditEventRow.action == "records.purged")
            ).all()
        assert len(purges) == 1
