"""Snapshots of a :class:`ContextPilot`'s live state, for restarts.

What is kept: the live prefix index (its tree of block keys with token
lengths and last use, the request ids ending on it, in LRU order, and its
counters), the multi-turn dedup conversations (block keys each one sent, in
LRU order), the recent-request store that guides online ordering, and the
planning counters, and the chat sessions (:meth:`ContextPilot.chat`, also
served over HTTP under ``/chat/sessions``). Blocks themselves are stored
only as their stable 64-bit keys; the one exception is the chat sessions'
histories, which are message texts (the next turn resends them), so a
snapshot holds document text only when chat sessions are live.

Format (version 1): one JSON object ::

    {"format": "contextpilot-state", "version": 1, "saved_at": <unix time>,
     "index": {"tick": T, "nodes": [[parent, key, tokens, tick, age], ...],
               "requests": [[rid, node], ...], "counters": {...}},
     "conversations": [[id, turns, idle_seconds, [key, ...]], ...],
     "recent": [[key, ...], ...], "pilot": {"calls": C, "planned": P},
     "chats": [{"id", "system", "max_turns", "conversation_id", "history": [[role, text], ...],
                "pending", "turns", "restarts", "keys", "tokens", "last_request_id",
                "idle_seconds"}, ...]}

``nodes`` are in preorder (a parent before its children; parent ``-1`` is
the root); ages are seconds since last use at save time. On load, the time
the process was down (wall clock) is added to every age, so TTLs keep
counting across a restart; the instance's *current* bounds (capacity, TTL,
caps) apply right after loading.

Guarantees: :func:`save` writes atomically (temporary file in the same
folder, fsync, rename, fsync of the folder): a crash leaves the old file or
the new one, never a torn one. :func:`restore` validates everything into
fresh objects first and swaps them in only when all of it is sound
(the index invariants are checked), so a bad snapshot raises
:class:`SnapshotError` and leaves the instance as it was. Costs: O(nodes +
requests + remembered keys) time and memory, under the instance's lock
while capturing.

Each store writes and reads its own part (``export()`` / ``load()`` on
:class:`~contextpilot.core.index.PrefixIndex`,
:class:`~contextpilot.core.dedup.DedupLedger`,
:class:`~contextpilot.core.recent.RecentRequests` and
:class:`~contextpilot.core.pilot.ContextPilot`); this module adds the
envelope (format, version, save time) and the file handling.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contextpilot.core.gcpause import gc_paused
from contextpilot.core.persist import SnapshotError, as_seconds

if TYPE_CHECKING:
    from contextpilot.core.pilot import ContextPilot

__all__ = ["FORMAT", "VERSION", "RestoreReport", "SnapshotError", "capture", "load", "restore", "save"]

FORMAT = "contextpilot-state"
VERSION = 1


@dataclass
class RestoreReport:
    requests: int
    nodes: int
    conversations: int
    recent: int
    #: chat sessions (histories) restored
    chat_sessions: int
    #: requests dropped right after loading by the current capacity, caps or TTL
    dropped_by_bounds: int
    downtime_seconds: float


def capture(pilot: ContextPilot) -> dict[str, Any]:
    """The instance's state as a JSON-ready dict (consistent: taken under
    the instance's lock)."""
    with gc_paused():
        state = pilot.export()
    return {"format": FORMAT, "version": VERSION, "saved_at": time.time(), **state}


def restore(pilot: ContextPilot, data: Any) -> RestoreReport:
    """Replace the instance's state by the snapshot's (all or nothing)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SnapshotError(f"not a {FORMAT} snapshot")
    if data.get("version") != VERSION:
        raise SnapshotError(f"snapshot version {data.get('version')!r}; this build reads version {VERSION}")
    downtime = max(0.0, time.time() - as_seconds(data.get("saved_at"), "saved_at"))
    with gc_paused():
        kept = pilot.load(data, downtime=downtime)
    return RestoreReport(**kept, downtime_seconds=round(downtime, 3))


# -- files ---------------------------------------------------------------------------


def save(path: str | os.PathLike[str], pilot: ContextPilot) -> int:
    """Write a snapshot atomically; returns its size in bytes."""
    raw = json.dumps(capture(pilot), separators=(",", ":")).encode()
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not possible on every platform)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return len(raw)


def load(path: str | os.PathLike[str], pilot: ContextPilot) -> RestoreReport | None:
    """Restore from ``path``; ``None`` when there is no such file.
    Raises :class:`SnapshotError` when it cannot be used (instance unchanged)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SnapshotError(f"cannot read {path}: {e}") from None
    try:
        with gc_paused():
            data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise SnapshotError(f"{path} is not valid JSON: {e}") from None
    return restore(pilot, data)
