"""``--state-file``: the live index and sessions survive a restart.

With several engine replicas, each replica's live index has its own file
(``<file>.<replica name>`` beside the first replica's). Restored once at
start (a missing file means a first start; an unusable
one is moved aside to ``<file>.corrupt`` and the server starts empty with
a warning), saved every ``interval`` seconds (0: never in between) and at
shutdown. Saving captures under the instance lock, then writes in a worker
thread, atomically (see :mod:`contextpilot.core.snapshot`). A failed save
is logged and retried at the next interval; it never stops the server.

Time is explicit: ``clock`` stamps ``last_saved`` (wall time, default
:func:`time.time`) and ``sleep`` paces the periodic saves (default
:func:`asyncio.sleep`). ``status["saves"]`` counts finished saves and
:meth:`StateFile.wait_saves` blocks until a count is reached, so a caller
waits for the event rather than for a guessed interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from contextpilot.core import snapshot
from contextpilot.core.pilot import ContextPilot

__all__ = ["StateFile"]

log = logging.getLogger("contextpilot.server")


class StateFile:
    """Snapshots of one or several pilots (one per engine replica).

    ``pilots`` maps a replica name to its pilot; the pilot under ``""``
    (the first replica) is saved at ``path``, every other one beside it at
    ``<path>.<name>``. ``status`` describes the first file; with several,
    ``status["replicas"]`` holds the others' by name.
    """

    def __init__(
        self,
        path: str,
        pilots: dict[str, ContextPilot],
        interval: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if "" not in pilots:
            raise ValueError("the first replica's pilot goes under the name ''")
        self.path = path
        self.files = {name: (path if not name else f"{path}.{name}", pilot) for name, pilot in pilots.items()}
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self._save_lock = threading.Lock()  # one writer at a time (periodic vs shutdown)
        self._saved = threading.Condition()  # notified after every save round
        self._status = {name: _fresh_status(file) for name, (file, _) in self.files.items()}

    @property
    def status(self) -> dict[str, Any]:
        out = dict(self._status[""])
        others = {name: st for name, st in self._status.items() if name}
        if others:
            out["replicas"] = others
        return out

    def restore(self) -> None:
        """Load every file there is; never raises for a bad file."""
        for name, (file, pilot) in self.files.items():
            self._restore(file, pilot, self._status[name])

    @staticmethod
    def _restore(path: str, pilot: ContextPilot, status: dict[str, Any]) -> None:
        try:
            rep = snapshot.load(path, pilot)
        except snapshot.SnapshotError as e:
            aside = path + ".corrupt"
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            log.warning("state file %s unusable (%s): moved to %s, starting empty", path, e, aside)
            status["restored"] = {"error": str(e), "moved_to": aside}
            return
        if rep is None:
            log.info("no state file at %s yet: starting empty", path)
            return
        status["restored"] = vars(rep)
        log.info(
            "restored %d requests (%d blocks) and %d sessions from %s (down %.1f s)",
            rep.requests,
            rep.nodes,
            rep.conversations,
            path,
            rep.downtime_seconds,
        )

    def save(self) -> None:
        with self._save_lock:
            for name, (file, pilot) in self.files.items():
                self._save(file, pilot, self._status[name], self.clock)
        with self._saved:
            self._saved.notify_all()

    def wait_saves(self, count: int, timeout: float) -> bool:
        """Block until the first file was saved ``count`` times in all
        (``status["saves"]``); False after ``timeout`` seconds."""
        with self._saved:
            return self._saved.wait_for(lambda: self._status[""]["saves"] >= count, timeout)

    @staticmethod
    def _save(path: str, pilot: ContextPilot, status: dict[str, Any], clock: Callable[[], float]) -> None:
        t0 = time.perf_counter()
        try:
            size = snapshot.save(path, pilot)
        except Exception as e:  # disk full, permissions: keep serving
            status["last_error"] = f"{type(e).__name__}: {e}"
            log.exception("saving state to %s failed", path)
            return
        took = time.perf_counter() - t0
        status["saves"] += 1
        status.update(
            last_saved=clock(),
            last_save_bytes=size,
            last_save_seconds=round(took, 3),
            last_error=None,
        )
        log.debug("saved state to %s (%d bytes, %.3f s)", path, size, took)

    async def run_periodic(self) -> None:
        if not self.interval:
            return
        while True:
            await self.sleep(self.interval)
            await asyncio.to_thread(self.save)


def _fresh_status(path: str) -> dict[str, Any]:
    return {
        "path": path,
        "restored": None,
        "last_saved": None,
        "last_save_bytes": None,
        "last_save_seconds": None,
        "last_error": None,
        "saves": 0,
    }
