"""A small process-wide memo shared by the adapters."""

from __future__ import annotations

import threading
from typing import Any


class BoundedCache:
    """A process-wide memo (cleared whole when full), safe across threads."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            return self._items.get(key)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if len(self._items) >= self._size:
                self._items.clear()
            self._items[key] = value
