"""CPU per randomization and per dispensing, in the service and in PostgreSQL.

Run: .venv/bin/python bench/bench_cpu.py [--subjects 1000]

bench_api's throughput on the 2-core machine is bounded by the CPU one call costs: the
service's (one process, so Python) plus PostgreSQL's, with the load generator beside them.
This benchmark measures those two costs without HTTP and without concurrency, which makes
them far steadier than requests per second on a shared machine: the service's use cases
(randomize with the first visit's kits, then dispense the next visit) are called one after
the other in this process, on the bench_api study, and the CPU time of this process and of
every PostgreSQL process is read before and after (from /proc, so Linux only).

It prints the two costs per call and the throughput they allow on this machine's cores if
nothing else ran (cores / (service + PostgreSQL CPU)): a ceiling for bench_api, against the
issues' targets (>= 400 randomizations/s, >= 300 dispensations/s).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.adapters.crypto.keyring import init_keys
from app.adapters.db.engine import make_engine
from app.bootstrap import bootstrap
from app.domain.access import Principal
from app.domain.roles import Role
from app.services import randomization as rnd
from app.services import supply
from app.settings import Settings
from bench.bench_api import ACTOR, prepare
from bench.common import fresh_database, postgres_via, report, versus
from bench.cpu import postgres_cpu_seconds


def measure(calls: list[Callable[[], Any]]) -> dict[str, float]:
    """Service and PostgreSQL CPU (ms per call) and wall time of the calls, in turn."""
    postgres, service, wall = postgres_cpu_seconds(), time.process_time(), time.perf_counter()
    for call in calls:
        call()
    n = len(calls)
    return {
        "service_ms": 1000 * (time.process_time() - service) / n,
        "postgres_ms": 1000 * (postgres_cpu_seconds() - postgres) / n,
        "wall_ms": 1000 * (time.perf_counter() - wall) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp, fresh_database("postgres") as url:
        keys = Path(tmp) / "keys"
        init_keys(keys)
        prepared = prepare(url, keys, max(16, args.subjects // 20), args.subjects)
        clock = Path(tmp) / "clock"
        settings = Settings(database_url=url, keys_dir=keys, simulation_clock_file=clock)
        container = bootstrap(settings, engine=make_engine(url))
        edc = Principal("bench", Role.EDC, frozenset({"bench"}))
        ids = prepared["subjects"]
        warm, timed = ids[: args.warmup], ids[args.warmup :]

        def randomize(subject: str) -> Callable[[], Any]:
            return lambda: rnd.randomize(container.uow(ACTOR), edc, "bench", subject, Decimal(70))

        def dispense(subject: str) -> Callable[[], Any]:
            return lambda: supply.record_dispensation(
                container.uow(ACTOR), edc, "bench", subject, "D4", Decimal(71)
            )

        measure([randomize(s) for s in warm])
        randomized = measure([randomize(s) for s in timed])
        clock.write_text(str(3 * 86400))  # the D4 visit is due
        measure([dispense(s) for s in warm])
        dispensed = measure([dispense(s) for s in timed])
        container.dispose()
    figures: dict[str, Any] = {
        "cores": cores,
        "calls_timed": len(timed),
        "postgres_via": postgres_via(),
    }
    for name, found, target in (
        ("randomization", randomized, 400),
        ("dispensation", dispensed, 300),
    ):
        per_call = found["service_ms"] + found["postgres_ms"]
        figures[f"{name}_service_cpu_ms"] = round(found["service_ms"], 2)
        figures[f"{name}_postgres_cpu_ms"] = round(found["postgres_ms"], 2)
        figures[f"{name}_wall_ms_one_client"] = round(found["wall_ms"], 2)
        figures[f"{name}_cpu_ceiling_per_s"] = versus(
            1000 * cores / per_call, target, lower_is_better=False
        )
    report("cpu_postgres", figures)


if __name__ == "__main__":
    main()
