"""Benchmark: a million slots in memory, 1,000 strata x 1,000, with their numbers.

    .venv/bin/python bench/bench_lists.py [--repeat N] [--profile]

Generates the permuted-block lists (ratio 1:1:1, block sizes 3 and 6) and the randomization
numbers for every slot, `--repeat` times, and reports the best and median wall times, slots
per second, and the distance to the target (under 2 s); the CPU time and the load average
are kept beside them, as other work on the machine inflates wall times. The figures go to
stdout and to bench/results/lists.json. `--profile` prints the cProfile top instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from app.domain.randomization import generate_lists, number_range, randomization_numbers

SEED = bytes(range(32))
STUDY = "bench"
STRATA = [f"S{i:04d}|shock=yes" for i in range(1000)]
PER_STRATUM = 1000
RATIO = {"PLACEBO": 1, "CYT107_QW": 1, "CYT107_BIW": 1}
BLOCK_SIZES = [3, 6]
TARGET_SECONDS = 2.0
RESULTS = Path(__file__).resolve().parent / "results" / "lists.json"


def run_once() -> tuple[float, float, float, int]:
    """(wall seconds for the lists, for the numbers, CPU seconds for both, slots made)."""
    cpu_started = time.process_time()
    started = time.perf_counter()
    lists = generate_lists(SEED, STUDY, "live", STRATA, RATIO, BLOCK_SIZES, PER_STRATUM)
    listed = time.perf_counter()
    total = sum(len(slots) for slots in lists.values())
    low, high = number_range(total)
    numbers = randomization_numbers(SEED, f"{STUDY}|live|numbers", total, low, high)
    done = time.perf_counter()
    cpu = time.process_time() - cpu_started
    assert len(numbers) == total
    return listed - started, done - listed, cpu, total


def profile() -> None:
    profiler = cProfile.Profile()
    profiler.runcall(run_once)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        profile()
        return

    runs = [run_once() for _ in range(args.repeat)]
    totals = [lists + numbers for lists, numbers, _, _ in runs]
    best = min(range(len(runs)), key=totals.__getitem__)
    slots = runs[best][3]
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    result = {
        "benchmark": "1,000 strata x 1,000 slots, ratio 1:1:1, blocks 3/6, plus numbers",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "repeats": args.repeat,
        "slots": slots,
        "best_seconds": round(totals[best], 3),
        "best_lists_seconds": round(runs[best][0], 3),
        "best_numbers_seconds": round(runs[best][1], 3),
        "median_seconds": round(statistics.median(totals), 3),
        "worst_seconds": round(max(totals), 3),
        "best_cpu_seconds": round(min(cpu for _, _, cpu, _ in runs), 3),
        "load_average_1min": load,
        "slots_per_second": round(slots / totals[best]),
        "target_seconds": TARGET_SECONDS,
        "margin_seconds": round(TARGET_SECONDS - totals[best], 3),
        "meets_target": totals[best] < TARGET_SECONDS,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    verdict = "under" if result["meets_target"] else "OVER"
    print(f"{slots:,} slots in {len(STRATA):,} strata, {args.repeat} runs")
    print(
        f"best   {totals[best]:.3f} s  (lists {runs[best][0]:.3f} s + numbers "
        f"{runs[best][1]:.3f} s)  {result['slots_per_second']:,} slots/s"
    )
    print(
        f"median {result['median_seconds']:.3f} s, worst {result['worst_seconds']:.3f} s, "
        f"best CPU time {result['best_cpu_seconds']:.3f} s (1-min load average {load})"
    )
    print(
        f"target < {TARGET_SECONDS:.1f} s: {verdict} by "
        f"{abs(TARGET_SECONDS - totals[best]):.3f} s ({totals[best] / TARGET_SECONDS:.0%} of it)"
    )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
