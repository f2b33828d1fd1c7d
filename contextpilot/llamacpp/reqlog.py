"""The proxy's JSONL request log (``LOG_FILE``): one JSON object per request.

Each line: ``time`` (unix seconds, when the answer ended), ``request_id``,
``endpoint``, ``status`` (HTTP status sent, or ``"stream_broken"``), ``slot``
(``id_slot``, ``null`` when unknown), ``prompt_tokens``, ``cached_tokens``
(``timings.cache_n``) and ``latency_ms`` (request received to answer ended).
A batched completion writes one line per prompt. Python's own log messages
never go here (they go to stderr), so every line parses as JSON.

Invariants: a line is written whole under a lock (concurrent requests never
interleave); a write error is logged once and the log turns itself off
rather than failing requests. O(1) per request, nothing kept in memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import IO, Any

__all__ = ["RequestLog", "entry"]

log = logging.getLogger("contextpilot.llamacpp")


def entry(
    rid: str,
    endpoint: str,
    status: int | str,
    result: dict[str, Any] | None,
    latency_s: float,
) -> dict[str, Any]:
    """One request-log record from a request's last native event (or None)."""
    last: dict[str, Any] = result if isinstance(result, dict) else {}
    t = last.get("timings")
    timings: dict[str, Any] = t if isinstance(t, dict) else {}
    slot = last.get("id_slot")
    cached = _count(timings.get("cache_n"))
    prompt = _count(last.get("tokens_evaluated")) or cached + _count(timings.get("prompt_n"))
    return {
        "time": round(time.time(), 3),
        "request_id": rid,
        "endpoint": endpoint,
        "status": status,
        "slot": slot if isinstance(slot, int) and not isinstance(slot, bool) and slot >= 0 else None,
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "latency_ms": round(latency_s * 1000.0, 2),
    }


class RequestLog:
    """Appends request records to ``path`` as JSON lines (no-op without a path)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
        self.written = 0
        if path:
            self._fh = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed in close())

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if self._fh is None:
                return
            try:
                self._fh.write(line)
                self.written += 1
            except OSError as e:
                log.error("request log %s: write failed (%s); request logging turned off", self.path, e)
                self._fh = None

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0
