"""Processes racing for the last places under an enrolment cap on PostgreSQL: a study cap
across sites (no site lock serializes them, the cap's row does) lets exactly `cap` through,
and the warning threshold is crossed exactly once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.adapters.db import migrate
from app.adapters.db.engine import make_engine
from app.adapters.db.models import OutboxRow, SubjectRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import bootstrap
from app.domain.access import Principal
from app.domain.roles import Role
from app.services import enrolment, supply
from app.services import randomization as rnd
from app.services.studies import load_study
from app.settings import Settings
from tests.conftest import FAST_HASHER, STUDIES_DIR, TEST_ACTOR, FreshDatabases

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EDC = Principal("edc-race", Role.EDC, frozenset({"iris-7a"}))
SITES = ("FR01", "FR02", "FR03")
PER_SITE = 4
CAP = 5
STRATA = {"shock": "no", "age": "ge65"}


def _container(url: str, keys_dir: str) -> Any:
    return bootstrap(Settings(database_url=url, keys_dir=Path(keys_dir)), hasher=FAST_HASHER)


def _worker(url: str, keys_dir: str, subject_ids: list[str], start: Any, queue: Any) -> None:
    supply.first_visit_servable = lambda *a, **k: True  # type: ignore[assignment]
    container = _container(url, keys_dir)
    outcome = []
    try:
        start.wait(timeout=60)
        for subject_id in subject_ids:
            try:
                rnd.randomize(container.uow(TEST_ACTOR), EDC, "iris-7a", subject_id, None)
                outcome.append("ok")
            except Exception as exc:
                outcome.append(getattr(exc, "code", repr(exc)))
        queue.put(outcome)
    finally:
        container.dispose()


@pytest.fixture
def prepared(fresh_databases: FreshDatabases, keys_dir: Path) -> str:
    url = fresh_databases.create("postgres")
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    container = _container(url, str(keys_dir))
    study, document, sha = read_study_file(STUDIES_DIR / "iris-7a.toml")
    load_study(container.uow(TEST_ACTOR), study, document, sha)
    rnd.generate_list(container.uow(TEST_ACTOR), "test", "iris-7a")
    for site in SITES:
        for i in range(PER_SITE):
            rnd.register_subject(
                container.uow(TEST_ACTOR), EDC, "iris-7a", f"{site}-{i}", site, STRATA
            )
    enrolment.set_cap(container.uow(TEST_ACTOR), None, "iris-7a", "study", "", CAP - 1, CAP)
    container.dispose()
    return url


def test_a_study_cap_lets_exactly_its_places_through(prepared: str, keys_dir: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=_worker,
            args=(prepared, str(keys_dir), [f"{site}-{i}" for i in range(PER_SITE)], start, queue),
        )
        for site in SITES
    ]
    for proc in procs:
        proc.start()
    start.set()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)

    outcomes = [o for batch in results for o in batch]
    assert outcomes.count("ok") == CAP, outcomes
    assert outcomes.count("enrolment_cap_reached") == len(SITES) * PER_SITE - CAP, outcomes
    engine = make_engine(prepared)
    with engine.connect() as conn:
        randomized = conn.execute(
            select(func.count())
            .select_from(SubjectRow)
            .where(SubjectRow.randomized_at.is_not(None))
        ).scalar_one()
        warnings = conn.execute(
            select(func.count())
            .select_from(OutboxRow)
            .where(OutboxRow.kind == "enrolment.cap_warning")
        ).scalar_one()
    engine.dispose()
    assert randomized == CAP
    assert warnings == 1
