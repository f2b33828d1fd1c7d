"""Latency figures for the proxy's ``/stats``: p50/p95/p99 over a bounded
window of recent requests, overall and per slot.

Invariants: at most ``window`` samples overall and per slot, at most
``max_slots`` slots kept (the least recently seen slot is dropped first);
``add`` is O(1), ``summary`` O(window log window) per series. Thread-safe.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from typing import Any

__all__ = ["LatencyWindow", "percentiles"]


def percentiles(samples: list[float]) -> dict[str, Any]:
    """``count`` and nearest-rank p50/p95/p99 (milliseconds, ``None`` when empty)."""
    out: dict[str, Any] = {"count": len(samples)}
    ordered = sorted(samples)
    for p in (50, 95, 99):
        out[f"p{p}_ms"] = (
            round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 2) if ordered else None
        )
    return out


class LatencyWindow:
    """Recent request latencies (ms), overall and by ``id_slot``."""

    def __init__(self, window: int = 1024, max_slots: int = 256) -> None:
        if window < 1 or max_slots < 1:
            raise ValueError("window and max_slots must be >= 1")
        self.window = window
        self.max_slots = max_slots
        self._lock = threading.Lock()
        self._all: deque[float] = deque(maxlen=window)
        self._slots: OrderedDict[int, deque[float]] = OrderedDict()

    def add(self, latency_ms: float, slot: int | None) -> None:
        with self._lock:
            self._all.append(latency_ms)
            if slot is None:
                return
            q = self._slots.get(slot)
            if q is None:
                q = self._slots[slot] = deque(maxlen=self.window)
                while len(self._slots) > self.max_slots:
                    self._slots.popitem(last=False)
            self._slots.move_to_end(slot)
            q.append(latency_ms)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            overall = list(self._all)
            by_slot = {s: list(q) for s, q in self._slots.items()}
        return {
            "window": self.window,
            **percentiles(overall),
            "by_slot": {str(s): percentiles(v) for s, v in sorted(by_slot.items())},
        }

    def clear(self) -> None:
        with self._lock:
            self._all.clear()
            self._slots.clear()
