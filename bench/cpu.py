"""CPU time of processes, read from /proc (Linux only): the service's, PostgreSQL's and the
load generator's, so a benchmark can say what one call costs each of them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from bench.rss import descendants

PROC = "/proc"


def _ticks(pid: int | str) -> int:
    """User + system CPU ticks of one process (0 if it has ended)."""
    try:
        with open(f"{PROC}/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    # "pid (comm) state ...": comm may hold spaces and parentheses; split after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pids: Iterable[int | str]) -> float:
    return sum(_ticks(pid) for pid in pids) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """User and system CPU of every PostgreSQL process now running."""
    pids = []
    for pid in os.listdir(PROC):
        if not pid.isdigit():
            continue
        try:
            with open(f"{PROC}/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"postgres"):
                    pids.append(pid)
        except OSError:
            continue  # ended meanwhile
    return cpu_seconds(pids)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and of its descendants now running (a server and its workers)."""
    return cpu_seconds([pid, *descendants(pid)])


def own_cpu_seconds() -> float:
    return time.process_time()
