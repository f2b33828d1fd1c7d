"""``--state-file``: the live index and sessions survive a restart.

Restored once at start (a missing file means a first start; an unusable
one is moved aside to ``<file>.corrupt`` and the server starts empty with
a warning), saved every ``interval`` seconds (0: never in between) and at
shutdown. Saving captures under the instance lock, then writes in a worker
thread, atomically (see :mod:`contextpilot.core.snapshot`). A failed save
is logged and retried at the next interval; it never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from typing import Any

from contextpilot.core import snapshot
from contextpilot.core.pilot import ContextPilot

__all__ = ["StateFile"]

log = logging.getLogger("contextpilot.server")


class StateFile:
    def __init__(self, path: str, pilot: ContextPilot, interval: float) -> None:
        self.path = path
        self.pilot = pilot
        self.interval = interval
        self._save_lock = threading.Lock()  # one writer at a time (periodic vs shutdown)
        self.status: dict[str, Any] = {
            "path": path,
            "restored": None,
            "last_saved": None,
            "last_save_bytes": None,
            "last_save_seconds": None,
            "last_error": None,
        }

    def restore(self) -> None:
        """Load the file if there is one; never raises for a bad file."""
        try:
            rep = snapshot.load(self.path, self.pilot)
        except snapshot.SnapshotError as e:
            aside = self.path + ".corrupt"
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.warning("state file %s unusable (%s): moved to %s, starting empty", self.path, e, aside)
            self.status["restored"] = {"error": str(e), "moved_to": aside}
            return
        if rep is None:
            log.info("no state file at %s yet: starting empty", self.path)
            return
        self.status["restored"] = vars(rep)
        log.info(
            "restored %d requests (%d blocks) and %d sessions from %s (down %.1f s)",
            rep.requests,
            rep.nodes,
            rep.conversations,
            self.path,
            rep.downtime_seconds,
        )

    def save(self) -> None:
        with self._save_lock:
            t0 = time.perf_counter()
            try:
                size = snapshot.save(self.path, self.pilot)
            except Exception as e:  # disk full, permissions: keep serving
                self.status["last_error"] = f"{type(e).__name__}: {e}"
                log.exception("saving state to %s failed", self.path)
                return
            took = time.perf_counter() - t0
            self.status.update(
                last_saved=time.time(),
                last_save_bytes=size,
                last_save_seconds=round(took, 3),
                last_error=None,
            )
            log.debug("saved state to %s (%d bytes, %.3f s)", self.path, size, took)

    async def run_periodic(self) -> None:
        if not self.interval:
            return
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.save)
