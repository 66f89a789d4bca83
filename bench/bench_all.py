"""Every benchmark figure, on SQLite and on PostgreSQL, each beside its target.

Run: .venv/bin/python bench/bench_all.py [--quick] [--backends sqlite,postgres]
         [--matrix 1x1,16x2,16x4] [--subjects 3000] [--pgbench-seconds 10]

- list generation: 1,000,000 slots (1,000 strata x 1,000) in memory (bench_lists), and
  generated, sealed and stored (bench_list_storage) on each backend;
- kits: 100,000 generated, sealed and stored with their initial shipments (bench_kits);
- randomizations and dispensations per second through the HTTP API, with p50/p99, for each
  CLIENTSxWORKERS of --matrix (bench_api: uvicorn with that many worker processes, that many
  keep-alive client connections from bench/loadgen.py), with each server worker's peak RSS
  under that load;
- on PostgreSQL, the CPU one randomization and one dispensing cost in the service and in
  PostgreSQL, and the throughput that allows on this machine's cores (bench_cpu);
- on PostgreSQL, the stack's floors (bench_http_floor): an endpoint that does nothing, on the
  same server and load, and psycopg sending a randomization's statements;
- on PostgreSQL, the pgbench floor (pgbench_floor): a randomization's transaction driven by
  pgbench with as many clients as the largest API run, as the service's statements, as one
  statement per step, and as the service's without the audit call (what the study's one
  hash chain costs), beside the API's figures.

The benchmarks run as subprocesses (their JSON goes to a temporary directory, so their own
result files in bench/results/ are left alone); this script prints one table and writes
bench/results/all.json (all_quick.json with --quick). --quick shrinks everything (100,000
slots stored, 10,000 kits, 60 subjects, 3 s of pgbench) for a smoke run; its figures are
compared with targets scaled to its sizes where a target scales (seconds per slot or kit),
so they only say whether the script works. Figures are noisy while other work shares the
CPUs; the 1-minute load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, ROOT, postgres_via, versus

BENCH = ROOT / "bench"
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}

# Targets (issues 5 and 7), on the 2-core machine with the load generator on it.
LIST_MEMORY_S = 2.0  # 1,000,000 slots in memory
LIST_STORED_S_PER_M = 10.0  # 1,000,000 slots generated, sealed and stored
KITS_S_PER_100K = 5.0  # 100,000 kits generated, sealed and stored
RANDOMIZATIONS_PER_S = 400
DISPENSATIONS_PER_S = 300
P99_MS = 100

# Runs a benchmark script as __main__ with bench.common.RESULTS pointed at a directory.
RUNNER = (
    "import runpy, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
    "import bench.common as common; common.RESULTS = Path(sys.argv[2]); "
    "script = sys.argv[3]; sys.argv = [script, *sys.argv[4:]]; "
    "runpy.run_path(script, run_name='__main__')"
)


def first_number(value: Any) -> float | None:
    """The figure in a value of a report ("64.4 (target >= 400: ...)" -> 64.4)."""
    if isinstance(value, int | float):
        return float(value)
    found = re.match(r"\s*(-?[\d.]+)", str(value))
    return float(found.group(1)) if found else None


def run_script(script: str, args: list[str], name: str, timeout: float) -> dict[str, Any]:
    """Run bench/<script> with `args`; its figures (from the JSON it writes as `name`)."""
    with tempfile.TemporaryDirectory() as results:
        started = time.perf_counter()
        try:
            done = subprocess.run(  # noqa: S603 - our own scripts
                [sys.executable, "-c", RUNNER, str(ROOT), results, str(BENCH / script), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=ROOT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"{script} {' '.join(args)}: no result in {timeout:.0f} s"}
        elapsed = time.perf_counter() - started
        written = Path(results) / f"{name}.json"
        if done.returncode != 0 or not written.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return {"error": f"{script} {' '.join(args)}: exit {done.returncode}: {tail}"}
        figures: dict[str, Any] = json.loads(written.read_text())["figures"]
    figures["wall_s"] = round(elapsed, 1)
    return figures


def in_memory_lists(repeat: int) -> dict[str, Any]:
    """1,000,000 slots and their numbers in memory, best of `repeat` (bench_lists)."""
    from bench.bench_lists import run_once

    runs = [run_once() for _ in range(repeat)]
    best = min(runs, key=lambda r: r[0] + r[1])
    seconds = best[0] + best[1]
    return {
        "slots": best[3],
        "best_s": round(seconds, 3),
        "cpu_s": round(best[2], 3),
        "slots_per_s": round(best[3] / seconds),
    }


def parse_matrix(text: str) -> list[tuple[int, int]]:
    pairs = []
    for item in text.split(","):
        clients, _, workers = item.strip().partition("x")
        pairs.append((int(clients), int(workers or 1)))
    return pairs


class Table:
    """Rows of (what, figure) printed as they come and kept for the JSON by section."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, str]] = {}
        self.current: dict[str, str] = {}

    def section(self, title: str) -> None:
        self.current = self.rows.setdefault(title, {})
        print(f"\n== {title} ==", flush=True)

    def add(self, key: str, value: Any) -> None:
        self.current[key.strip()] = str(value)
        print(f"  {key:<58} {value}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast smoke run")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--matrix", help="CLIENTSxWORKERS,... (default 1x1,16x2,16x4)")
    parser.add_argument("--subjects", type=int, help="subjects per API run (default 3000)")
    parser.add_argument("--pgbench-seconds", type=int, help="default 10")
    parser.add_argument("--pgbench-threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, help="in-memory list runs (default 3)")
    parser.add_argument("--timeout", type=float, default=1800, help="per benchmark, seconds")
    args = parser.parse_args()
    quick = args.quick
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    matrix = parse_matrix(args.matrix or ("1x1,4x2" if quick else "1x1,16x2,16x4"))
    subjects = args.subjects or (60 if quick else 3000)
    storage_sites = 25 if quick else 250  # 4 strata x 1,000 slots per site
    kit_level = 312 if quick else 3125  # 4 sites x 2 types x 4 deliveries of it
    pgbench_seconds = args.pgbench_seconds or (3 if quick else 10)
    pgbench_clients = max(c for c, _ in matrix)
    started = time.perf_counter()
    table = Table()
    raw: dict[str, Any] = {}

    table.section("List generation in memory (1,000 strata x 1,000 slots, numbers included)")
    lists = in_memory_lists(args.repeat or (1 if quick else 3))
    raw["lists_in_memory"] = lists
    table.add(f"{lists['slots']:,} slots in memory, s", versus(lists["best_s"], LIST_MEMORY_S))
    table.add("slots/s in memory", f"{lists['slots_per_s']:,} (CPU {lists['cpu_s']} s)")

    for backend in backends:
        name = NAMES[backend]
        found: dict[str, Any] = raw.setdefault(backend, {})

        table.section(f"{name}: list generated, sealed and stored")
        stored = run_script(
            "bench_list_storage.py",
            ["--backend", backend, "--sites", str(storage_sites)],
            f"list_storage_{backend}",
            args.timeout,
        )
        found["list_storage"] = stored
        if "error" in stored:
            table.add("list storage", stored["error"])
        else:
            slots = int(stored["slots"])
            seconds = first_number(stored["generated_sealed_stored_s"]) or 0.0
            table.add(
                f"{slots:,} slots generated, sealed, stored, s",
                versus(seconds, round(LIST_STORED_S_PER_M * slots / 1_000_000, 2)),
            )
            table.add("stored slots/s", f"{stored['stored_slots_per_s']:,}")

        table.section(f"{name}: kits generated, sealed and stored with initial shipments")
        kits = run_script(
            "bench_kits.py",
            ["--backend", backend, "--level", str(kit_level)],
            f"kits_{backend}",
            args.timeout,
        )
        found["kits"] = kits
        if "error" in kits:
            table.add("kits", kits["error"])
        else:
            count = int(kits["kits"])
            seconds = first_number(kits["generated_sealed_stored_s"]) or 0.0
            table.add(
                f"{count:,} kits generated, sealed, stored, s",
                versus(seconds, round(KITS_S_PER_100K * count / 100_000, 2)),
            )
            table.add("kits/s", f"{kits['kits_per_s']:,}")

        table.section(f"{name}: through the HTTP API ({subjects} subjects per run)")
        api_runs: dict[str, Any] = found.setdefault("api", {})
        for clients, workers in matrix:
            label = f"{clients} client{'s' if clients > 1 else ''} x {workers} worker" + (
                "s" if workers > 1 else ""
            )
            api = run_script(
                "bench_api.py",
                [
                    "--backend",
                    backend,
                    "--clients",
                    str(clients),
                    "--workers",
                    str(workers),
                    "--subjects",
                    str(subjects),
                ],
                f"api_{backend}",
                args.timeout,
            )
            api_runs[f"{clients}x{workers}"] = api
            if "error" in api:
                table.add(label, api["error"])
                continue
            for what, target in (
                ("randomization", RANDOMIZATIONS_PER_S),
                ("dispensation", DISPENSATIONS_PER_S),
            ):
                per_s = first_number(api[f"{what}s_per_s"]) or 0.0
                p99 = first_number(api[f"{what}_p99_ms"]) or 0.0
                failures = api[f"{what}_failures"]
                table.add(
                    f"{what}s/s, {label}",
                    versus(per_s, target, lower_is_better=False)
                    + (f", {failures} FAILED" if failures else ""),
                )
                table.add(f"  p50 ms, {label}", api[f"{what}_p50_ms"])
                table.add(f"  p99 ms, {label}", versus(p99, P99_MS))
                table.add(
                    f"  CPU ms per request, server + PostgreSQL + load, {label}",
                    f"{api.get(f'{what}_cpu_server_ms')} + {api.get(f'{what}_cpu_postgres_ms')}"
                    f" + {api.get(f'{what}_cpu_loadgen_ms')}",
                )
            supervisor = api.get("supervisor_peak_rss_mib")
            table.add(
                f"peak RSS per server worker, MiB, {label}",
                f"{api.get('worker_peak_rss_mib')} "
                + (
                    "(one process serves)"
                    if supervisor is None
                    else f"(uvicorn supervisor {supervisor})"
                ),
            )
            if api.get("first_failure"):
                table.add(f"first failure, {label}", api["first_failure"])

        if backend != "postgres":
            continue
        table.section(f"{name}: CPU per call, service and PostgreSQL (one client, no HTTP)")
        table.add("PostgreSQL reached through", postgres_via())
        cpu = run_script(
            "bench_cpu.py",
            ["--subjects", str(max(200, min(subjects, 1000)))],
            "cpu_postgres",
            args.timeout,
        )
        found["cpu"] = cpu
        if "error" in cpu:
            table.add("CPU per call", cpu["error"])
        else:
            for what in ("randomization", "dispensation"):
                table.add(
                    f"{what}: service + PostgreSQL CPU, ms",
                    f"{cpu[f'{what}_service_cpu_ms']} + {cpu[f'{what}_postgres_cpu_ms']}",
                )
                table.add(f"  {what}s/s the CPU allows", cpu[f"{what}_cpu_ceiling_per_s"])
        table.section(f"{name}: the stack's floors (an endpoint that does nothing; the driver)")
        floor_http = run_script(
            "bench_http_floor.py",
            ["--clients", str(max(c for c, _ in matrix)), "--requests", "600" if quick else "3000"],
            "http_floor",
            args.timeout,
        )
        found["http_floor"] = floor_http
        if "error" in floor_http:
            table.add("floors", floor_http["error"])
        else:
            table.add("empty endpoint: requests/s", floor_http["requests_per_s"])
            table.add(
                "  CPU ms per request, server + load",
                f"{floor_http['cpu_server_ms']} + {floor_http['cpu_loadgen_ms']}",
            )
            table.add(
                "psycopg, a randomization's 16 statements: client CPU ms",
                floor_http["driver_cpu_ms_per_randomization_statements"],
            )
        table.section(
            f"{name}: pgbench floor, a randomization's transaction without the service "
            f"({pgbench_clients} clients, {args.pgbench_threads} threads, {pgbench_seconds} s)"
        )
        from bench.pgbench_floor import run as pgbench_run

        try:
            floor = pgbench_run(
                clients=pgbench_clients,
                threads=args.pgbench_threads,
                seconds=pgbench_seconds,
                max_tps=3000,
            )
        except Exception as error:  # a floor that cannot run should not lose the rest
            floor = {"error": f"pgbench floor: {error!r}"}
        found["pgbench_floor"] = floor
        if "error" in floor:
            table.add("pgbench floor", floor["error"])
            continue
        table.add(
            "prepared: sites, subjects, kits",
            f"{floor['sites']:,}, {floor['subjects_prepared']:,}, {floor['kits_prepared']:,} "
            f"(in {floor['prepare_s']} s)",
        )
        for shape, what in (
            ("service", "the service's statements"),
            ("essential", "one statement per step"),
            ("unchained", "the service's without the audit call, what the chain costs"),
        ):
            result = floor[shape]
            table.add(
                f"{shape} ({what}, {result['statements_per_transaction']}): tx/s",
                versus(result["tps"], RANDOMIZATIONS_PER_S, lower_is_better=False),
            )
            table.add(f"  p50 ms, {shape}", result["p50_ms"])
            table.add(f"  p99 ms, {shape}", versus(result["p99_ms"] or 0.0, P99_MS))
            table.add(
                f"  allocations, kits, audit events written, {shape}",
                f"{result['allocations']:,}, {result['kits_dispensed']:,}, "
                f"{result['audit_events']:,} for {result['transactions']:,} transactions",
            )
            table.add(
                f"  slowest statements, {shape}, ms",
                " | ".join(f"{ms} {sql[:36]}" for ms, sql in result["slowest_statements_ms"][:3]),
            )
            if result["pgbench_errors"] or result["subjects_exhausted"]:
                table.add(
                    f"  pgbench trouble, {shape}",
                    result["pgbench_errors"] or "all prepared subjects used: raise max_tps",
                )
            for key, api in api_runs.items():
                clients = int(key.split("x")[0])
                if "error" in api or clients != pgbench_clients or not result["tps"]:
                    continue
                per_s = first_number(api["randomizations_per_s"]) or 0.0
                api_p99 = first_number(api["randomization_p99_ms"])
                table.add(
                    f"  API randomizations/s at {key} / {shape} floor",
                    f"{per_s / result['tps']:.1%} (p99 {api_p99} ms vs {result['p99_ms']} ms)",
                )

    load = round(os.getloadavg()[0], 2)
    wall = round(time.perf_counter() - started, 1)
    print(f"\n(1-minute load average {load}; {wall} s in all)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("all_quick.json" if quick else "all.json")
    payload = {
        "benchmark": "all",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min": load,
        },
        "options": {
            "quick": quick,
            "backends": backends,
            "matrix": [f"{c}x{w}" for c, w in matrix],
            "subjects": subjects,
            "storage_slots": storage_sites * 4 * 1000,
            "kit_level": kit_level,
            "pgbench_clients": pgbench_clients,
            "pgbench_seconds": pgbench_seconds,
        },
        "wall_s": wall,
        "figures": table.rows,
        "raw": raw,
    }
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"(written to {out})")


if __name__ == "__main__":
    main()
