"""Several processes randomizing into one stratum on PostgreSQL: no slot used twice, none
skipped, every subject randomized once; and racing retries of one Idempotency-Key."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.adapters.db import migrate
from app.adapters.db.engine import make_engine
from app.adapters.db.models import AllocationRow, StratumRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import bootstrap
from app.domain.access import Principal
from app.domain.roles import Role
from app.services import randomization as rnd
from app.services import supply
from app.services.studies import load_study
from app.settings import Settings
from tests.conftest import FAST_HASHER, STUDIES_DIR, TEST_ACTOR, FreshDatabases

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EDC = Principal("edc-race", Role.EDC, frozenset({"iris-7a"}))
PROCESSES = 4
PER_PROCESS = 6  # 24 subjects: the whole cap of the stratum
STRATA = {"shock": "no", "age": "ge65"}


def _container(url: str, keys_dir: str) -> Any:
    return bootstrap(Settings(database_url=url, keys_dir=Path(keys_dir)), hasher=FAST_HASHER)


def _worker(url: str, keys_dir: str, subject_ids: list[str], queue: Any) -> None:
    supply.first_visit_servable = lambda *a, **k: True  # type: ignore[assignment]
    container = _container(url, keys_dir)
    numbers = []
    try:
        for subject_id in subject_ids:
            result = rnd.randomize(container.uow(TEST_ACTOR), EDC, "iris-7a", subject_id, None)
            numbers.append(result.randomization_number)
        queue.put(("ok", numbers))
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(("error", repr(exc)))
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
    for i in range(PROCESSES * PER_PROCESS):
        rnd.register_subject(
            container.uow(TEST_ACTOR), EDC, "iris-7a", f"R-{i:03d}", "FR02", STRATA
        )
    container.dispose()
    return url


def test_processes_racing_into_one_stratum(prepared: str, keys_dir: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    ids = [f"R-{i:03d}" for i in range(PROCESSES * PER_PROCESS)]
    procs = [
        ctx.Process(target=_worker, args=(prepared, str(keys_dir), ids[p::PROCESSES], queue))
        for p in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(kind == "ok" for kind, _ in results), results
    numbers = [n for _, batch in results for n in batch]
    assert len(numbers) == len(set(numbers)) == PROCESSES * PER_PROCESS

    engine = make_engine(prepared)
    with engine.connect() as conn:
        key = "FR02|shock=no|age=ge65"
        stratum = conn.execute(select(StratumRow).where(StratumRow.key == key)).one()
        used = (
            conn.execute(
                select(AllocationRow.sequence)
                .where(AllocationRow.stratum_id == stratum.id)
                .order_by(AllocationRow.sequence)
            )
            .scalars()
            .all()
        )
        allocations = conn.execute(select(func.count()).select_from(AllocationRow)).scalar_one()
    engine.dispose()
    total = PROCESSES * PER_PROCESS
    assert used == list(range(1, total + 1)), "a slot was skipped or used twice"
    assert stratum.next_sequence == total + 1
    assert allocations == total
