"""The one eviction notifier every engine hook shares.

Engines call :meth:`EvictionNotifier.notify` from their eviction path; it
only appends ids to a bounded in-memory queue and returns. A daemon thread
sends them in batches as ``POST {index_url}/evict`` with
``{"request_ids": [...], "replica": ...}`` (``replica`` only when set).

Invariants:
- ``notify`` never blocks on the network and never raises: it holds one
  lock for O(len(ids)) list appends. Past ``max_queue`` pending ids, new
  ids are dropped and counted (``dropped_full``), so a dead index server
  costs the engine bounded memory.
- Ids are normalised (``chatcmpl-``/``cmpl-`` prefixes, vLLM suffixes) and
  engine health checks skipped before queueing; a batch holds each id once.
- Connection errors and 5xx are retried with exponential backoff (capped),
  at most ``max_retries`` times, then the batch is dropped (``failed``);
  4xx answers are not retried (``rejected``): resending cannot help.
- After ``fork()`` the child starts with an empty queue and its own thread
  (the parent's thread does not exist there).

Only the standard library is used, so importing this inside an engine
process costs a few milliseconds.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from contextpilot.core.ids import is_health_check, normalize_request_id

__all__ = ["ENV_API_KEY", "ENV_INDEX_URL", "ENV_REPLICA", "EvictionNotifier", "get_notifier"]

log = logging.getLogger("contextpilot.hooks")

ENV_INDEX_URL = "CONTEXTPILOT_INDEX_URL"
ENV_REPLICA = "CONTEXTPILOT_REPLICA"
ENV_API_KEY = "CONTEXTPILOT_API_KEY"
_TICK = 0.25  # longest single wait: a clock that jumps is noticed within this much real time


class EvictionNotifier:
    """Batches evicted request ids and posts them off the caller's thread.

    ``batch_size`` ids per POST at most; a partial batch is sent after
    ``flush_interval`` seconds. ``timeout`` bounds each POST;
    ``backoff``..``max_backoff`` seconds between retries.

    ``clock`` (default :func:`time.monotonic`) is what every deadline here
    is measured on: the coalescing window, the back-off between retries
    and :meth:`flush`'s timeout. Waits still block on a condition variable
    (woken early by new ids or :meth:`close`), but whether a deadline has
    passed is decided by ``clock`` alone, so a test can jump time instead
    of sleeping through it (a jump is noticed within 0.25 s).
    ``stats()["retries"]`` and ``stats()["batches"]`` are the events to
    wait on.
    """

    def __init__(
        self,
        index_url: str,
        *,
        replica: str | None = None,
        api_key: str | None = None,
        max_queue: int = 100_000,
        batch_size: int = 512,
        flush_interval: float = 0.05,
        timeout: float = 2.0,
        max_retries: int = 5,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not index_url.startswith(("http://", "https://")):
            raise ValueError(f"index_url must be an http(s) URL, got {index_url!r}")
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be >= 1")
        if flush_interval < 0 or timeout <= 0 or max_retries < 0 or backoff < 0 or max_backoff < backoff:
            raise ValueError("flush_interval, timeout, max_retries, backoff must be sensible (>= 0)")
        self.url = index_url.rstrip("/") + "/evict"
        self.replica = replica or None
        self.api_key = api_key or None
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self._counts = dict.fromkeys(
            ("queued", "sent", "batches", "dropped_full", "failed", "rejected", "retries"), 0
        )
        self._reset_process_state()
        atexit.register(self.close, 2.0)

    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: list[str] = []
        self._busy = False  # a batch taken from the queue is being sent
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- engine side -----------------------------------------------------------

    def notify(self, request_ids: Iterable[str]) -> int:
        """Queue evicted request ids; returns how many were queued."""
        try:
            if os.getpid() != self._pid:
                self._reset_process_state()
            ids = [
                normalize_request_id(r)
                for r in request_ids
                if isinstance(r, str) and r.strip() and not is_health_check(r)
            ]
            if not ids:
                return 0
            with self._cond:
                if self._closed:
                    return 0
                room = self.max_queue - len(self._pending)
                if room < len(ids):
                    self._counts["dropped_full"] += len(ids) - max(room, 0)
                    ids = ids[: max(room, 0)]
                self._pending.extend(ids)
                self._counts["queued"] += len(ids)
                self._ensure_thread()
                self._cond.notify()
            return len(ids)
        except Exception:  # the engine's eviction path must never fail because of us
            log.exception("contextpilot notifier: notify failed")
            return 0

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="contextpilot-notifier", daemon=True)
            self._thread.start()

    # -- background thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return  # closed and drained
                # let a burst of evictions coalesce into one POST
                deadline = self.clock() + self.flush_interval
                while len(self._pending) < self.batch_size and not self._closed:
                    if not self._wait_until(deadline):
                        break
                batch = list(dict.fromkeys(self._pending[: self.batch_size]))
                del self._pending[: self.batch_size]
                self._busy = True
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, batch: list[str]) -> None:
        body: dict[str, Any] = {"request_ids": batch}
        if self.replica:
            body["replica"] = self.replica
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        delay = self.backoff
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    resp.read()
                with self._cond:
                    self._counts["sent"] += len(batch)
                    self._counts["batches"] += 1
                return
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    log.warning("contextpilot index refused %d evictions: HTTP %d", len(batch), e.code)
                    with self._cond:
                        self._counts["rejected"] += len(batch)
                    return
                err: Exception = e
            except (OSError, ValueError) as e:  # URLError, timeouts, refused connections
                err = e
            if attempt == self.max_retries:
                break
            with self._cond:
                self._counts["retries"] += 1
                deadline = self.clock() + delay
                while not self._closed and self._wait_until(deadline):
                    pass  # woken by new ids: keep backing off; close() ends it
                if self._closed:
                    break  # shutting down: one try per batch
            delay = min(delay * 2, self.max_backoff)
        log.warning("contextpilot index unreachable (%s): dropped %d evictions", err, len(batch))
        with self._cond:
            self._counts["failed"] += len(batch)

    # -- control -------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued id was sent or given up; False on timeout."""
        deadline = self.clock() + timeout
        with self._cond:
            while self._pending or self._busy:
                if not self._wait_until(deadline):
                    return False
        return True

    def _wait_until(self, deadline: float) -> bool:
        """Wait on the condition (lock held) until notified or ``deadline``
        on ``clock``; False when the deadline had already passed."""
        left = deadline - self.clock()
        if left <= 0:
            return False
        self._cond.wait(min(left, _TICK))  # re-read the clock at least every tick
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (one try each, within ``timeout``), then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread.is_alive() and os.getpid() == self._pid:
            thread.join(timeout)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {**self._counts, "pending": len(self._pending)}


_singleton: EvictionNotifier | None = None
_singleton_lock = threading.Lock()


def get_notifier(environ: dict[str, str] | None = None) -> EvictionNotifier | None:
    """The process-wide notifier configured by ``CONTEXTPILOT_INDEX_URL``
    (plus ``CONTEXTPILOT_REPLICA`` and ``CONTEXTPILOT_API_KEY``); ``None``
    when the variable is unset. Created once, on first use."""
    global _singleton
    env = os.environ if environ is None else environ
    url = env.get(ENV_INDEX_URL, "").strip()
    if not url:
        return None
    with _singleton_lock:
        if _singleton is None or _singleton.url != url.rstrip("/") + "/evict":
            _singleton = EvictionNotifier(url, replica=env.get(ENV_REPLICA), api_key=env.get(ENV_API_KEY))
        return _singleton
