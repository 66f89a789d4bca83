"""Clocks: the system clock, and the simulation clock that `iwrs simulate` moves forward.

The simulation clock is the system clock plus an offset kept in a file, so every worker
process of a simulated service agrees on the date. It exists only when
IWRS_SIMULATION_CLOCK_FILE is set, which a production deployment never does.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FileOffsetClock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cached: tuple[float, timedelta] = (-1.0, timedelta(0))

    def offset(self) -> timedelta:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return timedelta(0)
        with self._lock:
            if mtime != self._cached[0]:
                text = self.path.read_text(encoding="utf-8").strip() or "0"
                self._cached = (mtime, timedelta(seconds=float(text)))
            return self._cached[1]

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            current = self.offset_unlocked()
            self.path.write_text(str((current + delta).total_seconds()), encoding="utf-8")
            self._cached = (-1.0, timedelta(0))
        return self.now()

    def offset_unlocked(self) -> timedelta:
        try:
            return timedelta(seconds=float(self.path.read_text(encoding="utf-8").strip() or "0"))
        except FileNotFoundError:
            return timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset()
