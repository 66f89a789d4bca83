"""Peak memory (RSS) of a server's worker processes, sampled from /proc while it is loaded.

    with RssSampler(server.pid) as rss:
        ...  # drive the load
    rss.figures()  # {"worker_peak_rss_mib": [...], ...}

Linux only, no psutil: every `interval` seconds the sampler finds the server's descendants
(each process's parent is field 4 of /proc/<pid>/stat) and reads VmHWM (the kernel's own
high-water mark of the resident set) and VmRSS from /proc/<pid>/status, keeping each
process's largest value. Uvicorn with several workers is a supervisor whose worker children
are `multiprocessing` spawns (a `resource_tracker` child is not a worker); with one worker
the server process serves requests itself and is reported as the only worker.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

PROC = Path("/proc")
KIB_PER_MIB = 1024


def _parent(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1])


def children(pid: int) -> list[int]:
    """The direct children of `pid` (from /proc/<pid>/task/*/children, or a /proc scan)."""
    found: set[int] = set()
    tasks = PROC / str(pid) / "task"
    try:
        for task in tasks.iterdir():
            text = (task / "children").read_text()
            found.update(int(c) for c in text.split())
        return sorted(found)
    except OSError:
        pass
    for entry in PROC.iterdir():
        if entry.name.isdigit() and _parent(int(entry.name)) == pid:
            found.add(int(entry.name))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(VmHWM, VmRSS) of a process in KiB, or None when it is gone."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0])
    if "VmRSS" not in values:  # a zombie has no memory lines
        return None
    return values.get("VmHWM", values["VmRSS"]), values["VmRSS"]


def _cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_worker(pid: int) -> bool:
    """A uvicorn worker is a `multiprocessing` spawn that is not its resource tracker."""
    cmdline = _cmdline(pid)
    return "multiprocessing" in cmdline and "resource_tracker" not in cmdline


@dataclass
class _Seen:
    peak_kib: int = 0
    last_rss_kib: int = 0
    samples: int = 0
    worker: bool = False


@dataclass
class RssSampler:
    """Samples the memory of `root` and its descendants in a background thread."""

    root: int
    interval: float = 0.2
    seen: dict[int, _Seen] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        for pid in [self.root, *descendants(self.root)]:
            memory = memory_kib(pid)
            if memory is None:
                continue
            hwm, rss = memory
            seen = self.seen.get(pid)
            if seen is None:
                seen = self.seen[pid] = _Seen(worker=pid != self.root and is_worker(pid))
            seen.peak_kib = max(seen.peak_kib, hwm, rss)
            seen.last_rss_kib = rss
            seen.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> RssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()  # a last look before the server is stopped

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def workers(self) -> dict[int, _Seen]:
        found = {pid: s for pid, s in self.seen.items() if s.worker}
        if found:
            return found
        root = self.seen.get(self.root)
        return {} if root is None else {self.root: root}

    def figures(self) -> dict[str, Any]:
        """Each worker's peak RSS (MiB, by pid order) and the supervisor's, for a report."""
        workers = self.workers()
        peaks = [round(workers[pid].peak_kib / KIB_PER_MIB, 1) for pid in sorted(workers)]
        supervisor = self.seen.get(self.root)
        return {
            "worker_peak_rss_mib": peaks,
            "max_worker_peak_rss_mib": max(peaks) if peaks else None,
            "supervisor_peak_rss_mib": None
            if supervisor is None or self.root in workers
            else round(supervisor.peak_kib / KIB_PER_MIB, 1),
        }


def main() -> None:
    """`python bench/rss.py PID`: print the memory of PID and its descendants once."""
    import sys

    root = int(sys.argv[1]) if len(sys.argv) > 1 else os.getpid()
    for pid in [root, *descendants(root)]:
        memory = memory_kib(pid)
        if memory is not None:
            worker = "worker " if is_worker(pid) else ""
            print(
                f"{pid:>8}  {worker:<7}peak {memory[0] / KIB_PER_MIB:8.1f} MiB  "
                f"now {memory[1] / KIB_PER_MIB:8.1f} MiB  {_cmdline(pid)[:80]}"
            )


if __name__ == "__main__":
    main()
