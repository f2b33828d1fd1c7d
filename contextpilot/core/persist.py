"""Checked reading of exported state (the stores' ``export()`` / ``load()``).

Each store of the live state (:class:`~contextpilot.core.index.PrefixIndex`,
:class:`~contextpilot.core.dedup.DedupLedger`,
:class:`~contextpilot.core.recent.RecentRequests`, the pilot's counters)
writes its own state as JSON-ready lists and dicts and reads it back with
these helpers, so a bad value raises :class:`SnapshotError` naming where it
sits (e.g. ``index.nodes[3].tokens``) instead of corrupting a live store.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SnapshotError", "as_dict", "as_int", "as_list", "as_seconds"]


class SnapshotError(ValueError):
    """A snapshot that cannot be loaded (unreadable, corrupt, other version)."""


def as_int(v: Any, what: str, lo: int | None = None) -> int:
    """``v`` if it is an int (not a bool) ``>= lo``."""
    if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
        raise SnapshotError(f"{what}: expected an int{'' if lo is None else f' >= {lo}'}, got {v!r}")
    return v


def as_seconds(v: Any, what: str) -> float:
    """``v`` as a float if it is a number ``>= 0`` (NaN refused)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
        raise SnapshotError(f"{what}: expected a number >= 0, got {v!r}")
    return float(v)


def as_list(v: Any, what: str) -> list[Any]:
    if not isinstance(v, list):
        raise SnapshotError(f"{what}: expected a list")
    return v


def as_dict(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise SnapshotError(f"{what}: expected an object")
    return v
