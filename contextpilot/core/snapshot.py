"""Snapshots of a :class:`ContextPilot`'s live state, for restarts.

What is kept: the live prefix index (its tree of block keys with token
lengths and last use, the request ids ending on it, in LRU order, and its
counters), the multi-turn dedup conversations (block keys each one sent, in
LRU order), the recent-request store that guides online ordering, and the
planning counters. Blocks themselves are never stored, only their stable
64-bit keys, so a snapshot holds no document text.

Format (version 1): one JSON object ::

    {"format": "contextpilot-state", "version": 1, "saved_at": <unix time>,
     "index": {"tick": T, "nodes": [[parent, key, tokens, tick, age], ...],
               "requests": [[rid, node], ...], "counters": {...}},
     "conversations": [[id, turns, idle_seconds, [key, ...]], ...],
     "recent": [[key, ...], ...], "pilot": {"calls": C, "planned": P}}

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

This module knows the internals of :class:`PrefixIndex`,
:class:`ConversationStore` and :class:`RecentRequests` (it lives in the
same package); the round-trip tests catch any drift.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import json
import os
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contextpilot.core.dedup import ConversationStore, _Conversation
from contextpilot.core.index import PrefixIndex, _Node

if TYPE_CHECKING:
    from contextpilot.core.pilot import ContextPilot

__all__ = ["FORMAT", "VERSION", "RestoreReport", "SnapshotError", "capture", "load", "restore", "save"]

FORMAT = "contextpilot-state"
VERSION = 1
_EVICTION_REASONS = ("engine", "capacity", "ttl")


class SnapshotError(ValueError):
    """A snapshot that cannot be loaded (unreadable, corrupt, other version)."""


@dataclass
class RestoreReport:
    requests: int
    nodes: int
    conversations: int
    recent: int
    #: requests dropped right after loading by the current capacity, caps or TTL
    dropped_by_bounds: int
    downtime_seconds: float


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of small objects: the cyclic GC would only cost here."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


# -- capture -------------------------------------------------------------------------


def capture(pilot: ContextPilot) -> dict[str, Any]:
    """The instance's state as a JSON-ready dict (consistent: taken under
    the instance's lock)."""
    with pilot._lock, _gc_paused():
        index = pilot.index
        with index.lock:
            data = {
                "format": FORMAT,
                "version": VERSION,
                "saved_at": time.time(),
                "index": _capture_index(index),
                "conversations": _capture_conversations(pilot.conversations),
                "recent": _capture_recent(pilot),
                "pilot": {"calls": pilot._calls, "planned": pilot._planned},
            }
    return data


def _capture_index(index: PrefixIndex) -> dict[str, Any]:
    now = index._clock()
    nodes: list[list[Any]] = []
    pos: dict[int, int] = {id(index.root): -1}
    stack = [index.root]
    while stack:
        v = stack.pop()
        if v is not index.root:
            assert v.parent is not None
            pos[id(v)] = len(nodes)
            nodes.append([pos[id(v.parent)], v.key, v.tokens, v.tick, round(max(0.0, now - v.stamp), 3)])
        stack.extend(reversed(v.children.values()))  # popped in insertion order: restored alike
    requests = [[rid, pos[id(end)]] for rid, end in index._requests.items()]
    return {
        "tick": index._tick,
        "nodes": nodes,
        "requests": requests,
        "counters": {
            "inserted": index._inserted,
            "hit_tokens": index._hit_tokens,
            "sent_tokens": index._sent_tokens,
            "evicted": {r: index._evicted[r] for r in _EVICTION_REASONS},
        },
    }


def _capture_conversations(store: ConversationStore) -> list[list[Any]]:
    now = store._clock()
    return [[cid, c.turns, round(max(0.0, now - c.last), 3), list(c.sent)] for cid, c in store._convs.items()]


def _capture_recent(pilot: ContextPilot) -> list[list[int]]:
    recent = pilot._recent
    n = recent.capacity
    out = []
    for i in range(n):  # oldest first: the ring starts at the next slot to overwrite
        slot = recent._slots[(recent._next + i) % n]
        if slot is not None:
            out.append(sorted(slot))
    return out


# -- restore -------------------------------------------------------------------------


def _int(v: Any, what: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
        raise SnapshotError(f"{what}: expected an int{'' if lo is None else f' >= {lo}'}, got {v!r}")
    return v


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
        raise SnapshotError(f"{what}: expected a number >= 0, got {v!r}")
    return float(v)


def _list(v: Any, what: str) -> list[Any]:
    if not isinstance(v, list):
        raise SnapshotError(f"{what}: expected a list")
    return v


def restore(pilot: ContextPilot, data: Any) -> RestoreReport:
    """Replace the instance's state by the snapshot's (all or nothing)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SnapshotError(f"not a {FORMAT} snapshot")
    if data.get("version") != VERSION:
        raise SnapshotError(f"snapshot version {data.get('version')!r}; this build reads version {VERSION}")
    downtime = max(0.0, time.time() - _num(data.get("saved_at"), "saved_at"))
    with pilot._lock, _gc_paused():
        index = pilot.index
        tree = _build_index(index, _dict(data.get("index"), "index"), downtime)
        convs = _build_conversations(
            pilot.conversations, _list(data.get("conversations"), "conversations"), downtime
        )
        recent = [
            [_int(k, f"recent[{i}][{j}]") for j, k in enumerate(_list(row, f"recent[{i}]"))]
            for i, row in enumerate(_list(data.get("recent"), "recent"))
        ]
        counters = _dict(data.get("pilot"), "pilot")
        calls, planned = (
            _int(counters.get("calls"), "pilot.calls", 0),
            _int(counters.get("planned"), "pilot.planned", 0),
        )
        # everything parsed: swap in (nothing above touched the instance)
        with index.lock:
            saved = _swap_index(index, tree)
            try:
                before = len(index)
                index.expire()  # today's capacity, caps and TTL
                index.check()
            except AssertionError as e:
                _swap_index(index, saved)
                raise SnapshotError(f"index invariant broken: {e}") from None
        store = pilot.conversations
        store._convs = convs
        store._total = sum(len(c.sent) for c in convs.values())
        store.trim()
        pilot._recent.clear()
        for row in recent[-pilot._recent.capacity :]:
            pilot._recent.add(row)
        pilot._calls, pilot._planned = calls, planned
        return RestoreReport(
            requests=len(index),
            nodes=index.nodes,
            conversations=len(store),
            recent=len(pilot._recent),
            dropped_by_bounds=before - len(index),
            downtime_seconds=round(downtime, 3),
        )


def _dict(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise SnapshotError(f"{what}: expected an object")
    return v


@dataclass
class _Tree:
    root: _Node
    requests: OrderedDict[str, _Node]
    heap: list[tuple[int, int, _Node]]
    tick: int
    tokens: int
    nodes: int
    inserted: int
    hit_tokens: int
    sent_tokens: int
    evicted: Counter[str]


def _build_index(index: PrefixIndex, data: dict[str, Any], downtime: float) -> _Tree:
    now = index._clock()
    root = _Node(0, 0, None)
    built: list[_Node] = []
    tokens = 0
    for i, row in enumerate(_list(data.get("nodes"), "index.nodes")):
        if not isinstance(row, list) or len(row) != 5:
            raise SnapshotError(f"index.nodes[{i}]: expected [parent, key, tokens, tick, age]")
        parent_i = _int(row[0], f"index.nodes[{i}].parent", -1)
        if parent_i >= i:
            raise SnapshotError(f"index.nodes[{i}]: parent {parent_i} does not come first")
        parent = root if parent_i < 0 else built[parent_i]
        key = _int(row[1], f"index.nodes[{i}].key", 0)
        if key in parent.children:
            raise SnapshotError(f"index.nodes[{i}]: key {key} twice under one parent")
        v = _Node(key, _int(row[2], f"index.nodes[{i}].tokens", 0), parent)
        v.tick = _int(row[3], f"index.nodes[{i}].tick", 0)
        v.stamp = now - _num(row[4], f"index.nodes[{i}].age") - downtime
        parent.children[key] = v
        built.append(v)
        tokens += v.tokens
    requests: OrderedDict[str, _Node] = OrderedDict()
    for i, row in enumerate(_list(data.get("requests"), "index.requests")):
        if not isinstance(row, list) or len(row) != 2 or not isinstance(row[0], str) or not row[0]:
            raise SnapshotError(f"index.requests[{i}]: expected [request id, node]")
        rid, at = row[0], _int(row[1], f"index.requests[{i}].node", 0)
        if at >= len(built) or rid in requests:
            raise SnapshotError(f"index.requests[{i}]: unknown node or repeated id")
        end = built[at]
        if end.ends is None:
            end.ends = set()
        end.ends.add(rid)
        requests[rid] = end
    # refs bottom-up: preorder reversed visits children before parents
    for v in reversed(built):
        v.refs += len(v.ends or ())
        if v.refs == 0:
            raise SnapshotError("index: a cached block no live request runs through")
        assert v.parent is not None
        v.parent.refs += v.refs
    heap = [(v.tick, i, v) for i, v in enumerate(built) if not v.children]
    heapq.heapify(heap)
    counters = _dict(data.get("counters"), "index.counters")
    evicted = _dict(counters.get("evicted"), "index.counters.evicted")
    return _Tree(
        root=root,
        requests=requests,
        heap=heap,
        tick=max(_int(data.get("tick"), "index.tick", 0), max((v.tick for v in built), default=0)),
        tokens=tokens,
        nodes=len(built),
        inserted=_int(counters.get("inserted"), "index.counters.inserted", 0),
        hit_tokens=_int(counters.get("hit_tokens"), "index.counters.hit_tokens", 0),
        sent_tokens=_int(counters.get("sent_tokens"), "index.counters.sent_tokens", 0),
        evicted=Counter(
            {r: _int(evicted.get(r, 0), f"index.counters.evicted.{r}", 0) for r in _EVICTION_REASONS}
        ),
    )


def _swap_index(index: PrefixIndex, tree: _Tree) -> _Tree:
    """Install ``tree`` in ``index`` (caller holds its lock); returns the old one."""
    old = _Tree(
        index.root, index._requests, index._heap, index._tick, index.tokens, index.nodes,
        index._inserted, index._hit_tokens, index._sent_tokens, index._evicted,
    )  # fmt: skip
    index.root, index._requests, index._heap = tree.root, tree.requests, tree.heap
    index._seq, index._tick = len(tree.heap), tree.tick
    index.tokens, index.nodes = tree.tokens, tree.nodes
    index._inserted, index._hit_tokens, index._sent_tokens = tree.inserted, tree.hit_tokens, tree.sent_tokens
    index._evicted = tree.evicted
    return old


def _build_conversations(
    store: ConversationStore, rows: list[Any], downtime: float
) -> OrderedDict[str, _Conversation]:
    now = store._clock()
    out: OrderedDict[str, _Conversation] = OrderedDict()
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], str) or not row[0]:
            raise SnapshotError(f"conversations[{i}]: expected [id, turns, idle_seconds, [keys]]")
        c = _Conversation(turns=_int(row[1], f"conversations[{i}].turns", 0))
        c.last = now - _num(row[2], f"conversations[{i}].idle_seconds") - downtime
        for j, k in enumerate(_list(row[3], f"conversations[{i}].keys")):
            c.sent[_int(k, f"conversations[{i}].keys[{j}]", 0)] = None
        out.pop(row[0], None)
        out[row[0]] = c
    return out


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
        with _gc_paused():
            data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise SnapshotError(f"{path} is not valid JSON: {e}") from None
    return restore(pilot, data)
