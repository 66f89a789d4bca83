"""Several processes dispensing at one site on PostgreSQL: no kit is ever handed out twice.

Three proofs on a fresh, committed database:
- processes racing to move the same kits: exactly one wins (the conditional UPDATE);
- processes dispensing the first visit to many subjects at once, as shipped (site lock):
  every kit once, and every dispensable kit of the short type used before any refusal;
- the same without the site lock, every process choosing the same kits first: the conditional
  UPDATE and the retried choice alone keep every kit to one subject.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from app.adapters.db import migrate
from app.adapters.db.engine import make_engine
from app.adapters.db.models import DispensationRow, KitRow
from app.adapters.studyfiles.codec import read_study_file
from app.bootstrap import Container, bootstrap
from app.domain.access import Principal
from app.domain.dispensing import InsufficientSupply
from app.domain.kits import KitStatus
from app.domain.roles import Role
from app.services import supply
from app.services.randomization import generate_list, randomize, register_subject
from app.services.studies import load_study
from app.settings import Settings
from tests.conftest import FAST_HASHER, STUDIES_DIR, TEST_ACTOR, FreshDatabases

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STUDY = "iris-7a"
SITE = "FR01"
PROCESSES = 4
# FR01 holds 16 kits of each type; two thirds of 28 subjects need the active kit at D1.
SUBJECTS = 28
PHARMACIST = Principal("race", Role.PHARMACIST, frozenset({STUDY}), {STUDY: frozenset({SITE})})
EDC = Principal("race-edc", Role.EDC, frozenset({STUDY}))


class FirstRandom:
    """Never shuffles: every process picks the same kits first (maximal contention)."""

    def randbelow(self, n: int, /) -> int:
        return n - 1


def _container(url: str, keys_dir: str) -> Container:
    return bootstrap(Settings(database_url=url, keys_dir=Path(keys_dir)), hasher=FAST_HASHER)


def _dispense_worker(
    url: str, keys_dir: str, subject_ids: list[str], unlocked: bool, queue: Any
) -> None:
    from app.adapters.db.supply_repos import SqlSupplyRepository

    lost_races = 0
    move_kits = SqlSupplyRepository.move_kits

    def counting_move(*args: Any, **kwargs: Any) -> bool:
        nonlocal lost_races
        moved = move_kits(*args, **kwargs)
        lost_races += not moved
        if moved and unlocked:
            # Hold the taken kits a moment before commit, so the other processes (which all
            # chose the same kits first) overlap with this one whatever the machine's load.
            time.sleep(0.05)
        return moved

    SqlSupplyRepository.move_kits = counting_move  # type: ignore[method-assign]
    if unlocked:
        SqlSupplyRepository.lock_site = lambda *a, **k: None  # type: ignore[method-assign]
        supply.check_resupply = lambda *a, **k: None  # type: ignore[assignment]
    container = _container(url, keys_dir)
    results = []
    try:
        for subject_id in subject_ids:
            for _retry in range(10):  # as a client does on 409 supply_busy
                try:
                    done = supply.record_dispensation(
                        container.uow(TEST_ACTOR),
                        PHARMACIST,
                        STUDY,
                        subject_id,
                        "D1",
                        Decimal("50"),
                        rng=FirstRandom() if unlocked else None,
                    )
                    results.append((subject_id, [k.kit_number for k in done.kits]))
                except supply.SupplyBusy:
                    continue
                except InsufficientSupply:
                    results.append((subject_id, None))
                break
        queue.put(("ok", (results, lost_races)))
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(("error", repr(exc)))
    finally:
        container.dispose()


def _move_worker(url: str, keys_dir: str, kit_ids: list[int], barrier: Any, queue: Any) -> None:
    container = _container(url, keys_dir)
    try:
        with container.uow(TEST_ACTOR) as uow:
            barrier.wait(timeout=60)
            won = uow.supply.move_kits(
                STUDY, kit_ids, KitStatus.AT_SITE, KitStatus.DISPENSED, site=SITE
            )
            time.sleep(0.3)  # hold the rows so the others wait on them
            uow.commit()
        queue.put(("ok", won))
    except Exception as exc:
        queue.put(("error", repr(exc)))
    finally:
        container.dispose()


@pytest.fixture
def prepared(fresh_databases: FreshDatabases, keys_dir: Path) -> str:
    """iris-7a with its kits, FR01's initial shipment received, and subjects randomized
    today through the use case (their first visit not yet dispensed)."""
    url = fresh_databases.create("postgres")
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    container = _container(url, str(keys_dir))
    study, document, sha = read_study_file(STUDIES_DIR / f"{STUDY}.toml")
    load_study(container.uow(TEST_ACTOR), study, document, sha)
    supply.generate_kits(container.uow(TEST_ACTOR), STUDY)
    with container.uow(TEST_ACTOR) as uow:
        (shipment,) = uow.supply.shipments(STUDY, site=SITE)
    supply.receive_shipment(container.uow(TEST_ACTOR), PHARMACIST, STUDY, shipment.code)
    generate_list(container.uow(TEST_ACTOR), "test", STUDY)
    for i in range(SUBJECTS):
        strata = {"shock": ("yes", "no")[i % 2], "age": "ge65"}  # two strata: under their caps
        register_subject(container.uow(TEST_ACTOR), EDC, STUDY, f"C-{i:03d}", SITE, strata)
        randomize(container.uow(TEST_ACTOR), EDC, STUDY, f"C-{i:03d}", None)
    container.dispose()
    return url


def _race(
    url: str, keys_dir: Path, unlocked: bool
) -> tuple[list[tuple[str, list[str] | None]], int]:
    """Each subject with the kits it got (None: refused), and how many takes lost a race."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    ids = [f"C-{i:03d}" for i in range(SUBJECTS)]
    procs = [
        ctx.Process(
            target=_dispense_worker,
            args=(url, str(keys_dir), ids[p::PROCESSES], unlocked, queue),
        )
        for p in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    reports = [queue.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(kind == "ok" for kind, _ in reports), reports
    results = [r for _, (batch, _lost) in reports for r in batch]
    return results, sum(lost for _, (_batch, lost) in reports)


def _first_visit_types(url: str, keys_dir: Path) -> dict[str, str]:
    container = _container(url, str(keys_dir))
    types = {}
    with container.uow(TEST_ACTOR) as uow:
        stored = uow.studies.get(STUDY)
        assert stored is not None
        table = stored.study.dispensing.kit_type_by_arm_visit
        for i in range(SUBJECTS):
            subject = uow.subjects.get(STUDY, f"C-{i:03d}")
            assert subject is not None
            arm = uow.lists.arm_of(subject)
            assert arm is not None
            types[subject.subject_id] = table[(arm, "D1")]
    container.dispose()
    return types


def _check(url: str, keys_dir: Path, results: list[tuple[str, list[str] | None]]) -> None:
    handed = [n for _, numbers in results if numbers for n in numbers]
    assert len(handed) == len(set(handed)), "a kit was dispensed twice"
    needs = _first_visit_types(url, keys_dir)
    demand = Counter(needs.values())
    served = Counter(needs[s] for s, numbers in results if numbers)
    refused = Counter(needs[s] for s, numbers in results if numbers is None)
    # Whatever the interleaving, every kit of a type in short supply is used before anyone is
    # refused; from then on everyone is refused, whatever the type they would get (a refusal
    # never depends on the arm), so a type in plenty serves only those who came before.
    short = {t for t, n in demand.items() if n > 16}
    assert short, "the race needs a type in short supply"
    assert {t: served[t] for t in short} == dict.fromkeys(short, 16)
    assert all(served[t] <= n for t, n in demand.items())
    assert served + refused == demand

    engine = make_engine(url)
    with engine.connect() as conn:
        dispensed = conn.execute(
            select(KitRow.kit_number, KitRow.dispensation_id).where(KitRow.status == "dispensed")
        ).all()
        dispensations = conn.execute(select(func.count()).select_from(DispensationRow)).scalar_one()
    engine.dispose()
    assert sorted(n for n, _ in dispensed) == sorted(handed)
    assert len({d for _, d in dispensed}) == dispensations == sum(served.values())


def test_racing_moves_of_the_same_kits_one_wins(prepared: str, keys_dir: Path) -> None:
    engine = make_engine(prepared)
    with engine.connect() as conn:
        kit_ids = list(
            conn.execute(
                select(KitRow.id).where(KitRow.status == "at_site").order_by(KitRow.id).limit(3)
            ).scalars()
        )
    engine.dispose()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=_move_worker, args=(prepared, str(keys_dir), kit_ids, barrier, queue))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    reports = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(kind == "ok" for kind, _ in reports), reports
    assert sorted(won for _, won in reports) == [False] * (PROCESSES - 1) + [True]


def test_processes_dispensing_at_one_site(prepared: str, keys_dir: Path) -> None:
    results, lost_races = _race(prepared, keys_dir, unlocked=False)
    _check(prepared, keys_dir, results)
    assert lost_races == 0  # the site lock serializes them: no choice is ever made twice


def test_without_the_site_lock_the_conditional_update_alone_suffices(
    prepared: str, keys_dir: Path
) -> None:
    results, lost_races = _race(prepared, keys_dir, unlocked=True)
    _check(prepared, keys_dir, results)
    assert lost_races > 0  # the processes did collide on the same kits


def test_a_rolled_back_unit_of_work_locks_the_site_again(prepared: str, keys_dir: Path) -> None:
    """A refusal rolls its work back and then, in the same unit of work, ships under the
    site's lock: the lock must be taken again, not remembered from the rolled-back
    transaction (two refused processes did ship at once before)."""
    container = _container(prepared, str(keys_dir))
    try:
        with container.uow(TEST_ACTOR) as uow:
            uow.supply.lock_site(STUDY, SITE)
            uow.supply.stock(STUDY, KitStatus.AT_SITE, site=SITE)
            uow.rollback()
            uow.supply.lock_site(STUDY, SITE)
            uow.supply.stock(STUDY, KitStatus.AT_SITE, site=SITE)
            with container.engine.connect() as other, pytest.raises(OperationalError):
                other.execute(
                    text("SELECT 1 FROM site WHERE code = :code FOR UPDATE NOWAIT"),
                    {"code": SITE},
                )
    finally:
        container.dispose()


def test_a_lost_move_reads_the_stock_again(prepared: str, keys_dir: Path) -> None:
    """A transaction whose chosen kits were taken meanwhile sees the site's stock afresh on
    its next choice (it retries on what is really left, not on what it read first)."""
    container = _container(prepared, str(keys_dir))
    try:
        with container.uow(TEST_ACTOR) as slow:
            before = slow.supply.stock(STUDY, KitStatus.AT_SITE, site=SITE)
            taken = before[0].kit_id
            with container.uow(TEST_ACTOR) as fast:
                assert fast.supply.move_kits(STUDY, [taken], KitStatus.AT_SITE, KitStatus.DAMAGED)
                fast.commit()
            assert not slow.supply.move_kits(STUDY, [taken], KitStatus.AT_SITE, KitStatus.DISPENSED)
            after = slow.supply.stock(STUDY, KitStatus.AT_SITE, site=SITE)
            assert taken not in {c.kit_id for c in after}
            assert len(after) == len(before) - 1
    finally:
        container.dispose()
