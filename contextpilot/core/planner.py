"""Planning: block order within each request and the order to run them.

``plan`` is the one entry point for batch and online use: it groups the
requests into a prefix-sharing forest (:mod:`contextpilot.core.cluster`),
then lays each request out along it (:mod:`contextpilot.core.order`),
following what the live index says the engine holds. A batch of one is the
online case.

Huge batches are cut, along a similarity sort, into chunks of at most
``chunk_size`` requests, planned in parallel worker processes, which bounds
memory per process; requests that share blocks sort together, so little
reuse crosses a cut.

The calling process keeps the batch as flat numpy arrays (one planning id
per block, row offsets): interning, the chunk sort, what goes to the
workers and the assembly of the result are array work, O(total blocks)
with a small constant. Workers are spawned first, so their start-up
overlaps the interning, and get every chunk at once as compact arrays; the
caller assembles chunk j while they plan the following ones. Phase timings
are logged at DEBUG.

Cost: near-linear in the total number of blocks (see the cluster module).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate, chain
from typing import Any

import numpy as np

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.cluster import Forest, _popular_key, build_forest
from contextpilot.core.index import PrefixIndex
from contextpilot.core.order import Emitter, PlanItems
from contextpilot.core.recent import RecentRequests

__all__ = ["Plan", "plan"]

_log = logging.getLogger(__name__)

DEFAULT_CHUNK = 100_000


@dataclass
class Plan:
    """A schedule: run ``contexts[j]`` (``= input[order[j]]`` reordered) j-th."""

    order: list[int]
    contexts: list[list[Block]]
    #: stable block keys and token lengths, aligned with ``contexts`` (empty
    #: unless keys were asked for: ``with_keys`` or live state)
    keys: list[list[int]]
    tokens: list[list[int]]
    #: input indices of each prefix-sharing group, groups in schedule order
    groups: list[list[int]] = field(default_factory=list)
    #: prompt tokens reusable within the plan at unbounded cache
    shared_tokens: int = 0
    #: tokens of all blocks planned
    total_tokens: int = 0


#: Batches with at least this many blocks are interned and chunked as flat
#: numpy arrays; smaller ones stay lists (numpy's fixed costs would dominate).
FLAT_MIN_BLOCKS = 2048


@dataclass
class _Batch:
    """The interned batch: request ``i`` is ``rows[i]`` (list form) or
    ``pids[starts[i]:starts[i + 1]]`` (flat form).

    Planning ids: the first copy of a block in a request is the block's
    dense id; a k-th copy gets an id of its own (shared across requests).
    ``tokens``/``values``/``keys`` are indexed by planning id."""

    tokens: list[int]
    values: list[Block]
    keys: list[int]
    rows: list[list[int]] | None = None
    pids: np.ndarray | None = None
    starts: np.ndarray | None = None

    def lists(self, idx: np.ndarray | None = None) -> list[list[int]]:
        """Requests (all, or those at ``idx``) as lists of pids."""
        if self.rows is not None:
            return self.rows if idx is None else [self.rows[i] for i in idx.tolist()]
        assert self.pids is not None and self.starts is not None
        pids, lens = (self.pids, np.diff(self.starts)) if idx is None else self.gather(idx)
        return _split(pids.tolist(), lens)

    def gather(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat form: pids of the requests at ``idx``, concatenated, and
        their lengths."""
        assert self.pids is not None and self.starts is not None
        lens = self.starts[idx + 1] - self.starts[idx]
        offs = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        pos = np.repeat(self.starts[idx] - offs[:-1], lens) + np.arange(offs[-1], dtype=np.int64)
        return self.pids[pos], lens

    def total_tokens(self) -> int:
        if self.rows is not None:
            return sum(map(self.tokens.__getitem__, chain.from_iterable(self.rows)))
        assert self.pids is not None
        freq = np.bincount(self.pids, minlength=len(self.tokens)).tolist()
        return sum(map(int.__mul__, freq, self.tokens))


def _split(flat: Any, lens: np.ndarray) -> list[Any]:
    """``flat`` cut into consecutive pieces of lengths ``lens``."""
    ls = lens.tolist()
    if ls and ls.count(ls[0]) == len(ls):
        step = ls[0]
        if step:
            return [flat[i : i + step] for i in range(0, step * len(ls), step)]
        return [flat[:0] for _ in ls]
    ends = list(accumulate(ls))
    return [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def _items(contexts: Sequence[Sequence[Block]], table: BlockTable, with_keys: bool, flat: bool) -> _Batch:
    """Intern the batch and number its planning ids (see :class:`_Batch`).
    Flat: O(total blocks) numpy work, Python work only per distinct block
    and per request that repeats a block."""
    if flat:
        pids, starts = table.intern_flat(contexts)
        if len(table) + len(pids) < 2**31:  # room for every extra copy: half the memory
            pids = pids.astype(np.int32)
        batch = _Batch([], [], [], pids=pids, starts=starts)
        repeats = _rows_with_repeats(pids, starts)
    else:
        rows = table.intern_many(contexts)
        batch = _Batch([], [], [], rows=rows)
        repeats = [r for r, row in enumerate(rows) if len(set(row)) != len(row)]
    n = len(table)
    values = batch.values = list(table.block_list)
    tokens = batch.tokens = list(table.token_list)
    base = None  # pid -> dense block id, once there are extra copies
    extra: dict[tuple[int, int], int] = {}
    for r in repeats:
        row = rows[r] if not flat else pids[starts[r] : starts[r + 1]].tolist()
        seen: dict[int, int] = {}
        for j, i in enumerate(row):
            o = seen.get(i, 0)
            seen[i] = o + 1
            if o:
                p = extra.get((i, o))
                if p is None:
                    if base is None:
                        base = list(range(n))
                    p = extra[(i, o)] = len(values)
                    values.append(values[i])
                    tokens.append(tokens[i])
                    base.append(i)
                row[j] = p
        if flat:
            pids[starts[r] : starts[r + 1]] = row
    if with_keys:
        batch.keys = [table.key(i) for i in (range(n) if base is None else base)]
    return batch


def _rows_with_repeats(ids: np.ndarray, starts: np.ndarray) -> list[int]:
    """Indices (ascending) of the rows holding some id more than once."""
    lens = np.diff(starts)
    n = len(lens)
    width = int(lens.max(initial=0))
    if width < 2:
        return []
    if n * width > 2 * len(ids) + 1024:  # too ragged to pad: row by row
        return [r for r, row in enumerate(_split(ids.tolist(), lens)) if len(set(row)) != len(row)]
    if (lens == width).all():
        table = np.sort(ids.reshape(n, width), axis=1)
    else:
        # pad with distinct negatives, which never equal an id or each other
        table = np.empty((n, width), dtype=ids.dtype)
        table[:] = -1 - np.arange(width, dtype=ids.dtype)
        shift = np.arange(0, n * width, width, dtype=np.int64) - starts[:-1]
        table.reshape(-1)[np.arange(len(ids), dtype=np.int64) + np.repeat(shift, lens)] = ids
        table.sort(axis=1)
    return np.flatnonzero((table[:, 1:] == table[:, :-1]).any(axis=1)).tolist()


def _chunks(batch: _Batch, chunk_size: int) -> list[np.ndarray]:
    """Request indices of each chunk: consecutive runs of ``chunk_size`` in
    a sort by each request's most frequent blocks."""
    n = len(batch.starts) - 1 if batch.rows is None else len(batch.rows)
    if n <= chunk_size:
        return [np.arange(n, dtype=np.int64)]
    assert batch.pids is not None and batch.starts is not None
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(batch.starts))
    freq = np.bincount(batch.pids, minlength=len(batch.tokens))
    order = np.argsort(_popular_key(rows, batch.pids, n, freq), kind="stable")
    return [order[i : i + chunk_size] for i in range(0, n, chunk_size)]


@dataclass
class _ChunkPlan:
    left: list[int]
    right: list[int]
    roots: list[int]
    shared: int
    #: schedule (indices into the chunk) and each scheduled request's pids,
    #: when planned without live state: lists, or (from a worker) arrays
    #: with the pids flat, cut by ``lens``
    order: Any = None
    seqs: Any = None
    lens: np.ndarray | None = None


def _plan_chunk(requests: list[list[int]], tokens: list[int], k: int, backend: str, emit: bool) -> _ChunkPlan:
    """Forest (and, without live state, the layout) of one chunk."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        forest = build_forest([frozenset(r) for r in requests], tokens, k=k, backend=backend)
        out = _ChunkPlan(forest.left, forest.right, forest.roots, int(forest.savings(tokens)))
        if emit:
            out.order, out.seqs = Emitter(PlanItems([], tokens, requests)).emit(forest, requests)
        return out
    finally:
        if gc_was_on:
            gc.enable()


def _plan_chunk_flat(
    pids: np.ndarray, lens: np.ndarray, tokens: np.ndarray, k: int, backend: str, emit: bool
) -> _ChunkPlan:
    """:func:`_plan_chunk` in a worker: the requests come flat (``pids``
    cut by ``lens``) and the layout goes back flat; both pickle compactly."""
    out = _plan_chunk(_split(pids.tolist(), lens), tokens.tolist(), k, backend, emit)
    if emit:
        seqs = out.seqs
        out.order = np.asarray(out.order, dtype=np.int64)
        out.lens = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        out.seqs = np.fromiter(chain.from_iterable(seqs), dtype=pids.dtype, count=int(out.lens.sum()))
    return out


def _objects(xs: list) -> np.ndarray:
    """``xs`` as an object array: fancy indexing then ``tolist`` hands out
    references to the same objects, at C speed."""
    out = np.empty(len(xs), dtype=object)
    out[:] = xs
    return out


def _warm() -> None:
    """First task of each worker: importing this module (to unpickle the
    call) loads numpy, scipy and the planner while the parent interns."""


def _forest_of(requests: list[list[int]], cp: _ChunkPlan) -> Forest:
    inter = [frozenset(r) for r in requests]
    for a, b in zip(cp.left, cp.right):
        inter.append(inter[a] & inter[b])
    return Forest(len(requests), cp.left, cp.right, inter, cp.roots)


def _pool(workers: int, n: int, chunk_size: int) -> ProcessPoolExecutor | None:
    """Worker processes for a batch of ``n`` requests, started (and warming
    up) at once so their start-up overlaps the parent's interning; ``None``
    when the batch is one chunk or ``workers`` is 1."""
    n_workers = min(workers, -(-n // chunk_size))
    if n_workers <= 1:
        return None
    # spawn, not fork: the caller may be a threaded server
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"))
    for _ in range(n_workers):
        pool.submit(_warm)
    return pool


def _chunk_plans(pool: ProcessPoolExecutor | None, batch: _Batch, chunks: list[np.ndarray], k, backend, emit):
    """Plans of the chunks, in chunk order. With a pool, every chunk is
    submitted at once (compact arrays), so workers run ahead while the
    parent assembles the earlier ones."""
    if pool is None or len(chunks) == 1:
        for c in chunks:
            yield _plan_chunk(batch.lists(c if len(chunks) > 1 else None), batch.tokens, k, backend, emit)
        return
    tokens = np.asarray(batch.tokens, dtype=np.int64)
    futures = [pool.submit(_plan_chunk_flat, *batch.gather(c), tokens, k, backend, emit) for c in chunks]
    futures.reverse()
    while futures:  # drop each result once handed out: only pending ones stay in memory
        yield futures.pop().result()


def plan(
    contexts: Sequence[Sequence[Block]],
    *,
    token_counter: Any = None,
    table: BlockTable | None = None,
    index: PrefixIndex | None = None,
    recent: RecentRequests | None = None,
    k: int = 6,
    chunk_size: int = DEFAULT_CHUNK,
    with_keys: bool | None = None,
    backend: str = "scipy",
    workers: int = 1,
) -> Plan:
    """Plan already-validated contexts (see ``blocks.validate_contexts``).

    ``index``/``recent``: live state to follow (read only here; the caller
    records what was sent). ``with_keys``: also return stable block keys
    (default: when live state is given). ``backend``: ``"scipy"`` or
    ``"torch"`` for the overlap product. ``workers``: processes planning
    the chunks of a huge batch in parallel (default 1; they are spawned, so
    a calling script needs the usual ``if __name__ == "__main__":`` guard).
    Deterministic for the same inputs and state, whatever ``workers``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    gc_was_on = gc.isenabled()
    gc.disable()  # millions of small containers: the cyclic GC only costs here
    try:
        return _plan(
            contexts, token_counter, table, index, recent, k, chunk_size, with_keys, backend, workers
        )
    finally:
        if gc_was_on:
            gc.enable()


def _plan(contexts, token_counter, table, index, recent, k, chunk_size, with_keys, backend, workers) -> Plan:
    pool = _pool(workers, len(contexts), chunk_size)
    try:
        return _plan_with(
            pool, contexts, token_counter, table, index, recent, k, chunk_size, with_keys, backend
        )
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _plan_with(
    pool, contexts, token_counter, table, index, recent, k, chunk_size, with_keys, backend
) -> Plan:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    table = table if table is not None else BlockTable(token_counter)
    if with_keys is None:
        with_keys = index is not None or recent is not None
    flat = len(contexts) > chunk_size or sum(map(len, contexts)) >= FLAT_MIN_BLOCKS
    batch = _items(contexts, table, with_keys, flat)
    emitter = Emitter(PlanItems(batch.keys, batch.tokens, []), index, recent)
    live = emitter.index is not None or emitter.recent is not None
    chunks = _chunks(batch, chunk_size)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    _log.debug(
        "planner: %d requests in %d chunks, ready in %.2f s CPU, %.2f s wall",
        len(contexts),
        len(chunks),
        cpu,
        wall,
        extra={"planner_phase": "chunks_ready", "cpu_seconds": cpu, "wall_seconds": wall},
    )
    out = _Assembly(batch, with_keys)
    whole = len(chunks) == 1
    for chunk, cp in zip(chunks, _chunk_plans(pool, batch, chunks, k, backend, not live)):
        out.shared += cp.shared
        if cp.lens is not None:  # flat, from a worker
            forest = Forest(len(chunk), cp.left, cp.right, [], cp.roots)
            out.add_flat(chunk, forest, cp.order, cp.seqs, cp.lens)
            continue
        if live:
            part = batch.lists(None if whole else chunk)
            forest = _forest_of(part, cp)
            o, seqs = emitter.emit(forest, part)
        else:
            forest = Forest(len(chunk), cp.left, cp.right, [], cp.roots)
            o, seqs = cp.order, cp.seqs
        out.add_lists(None if whole else chunk, forest, o, seqs)
    _log.debug(
        "planner: planned in %.2f s wall, %.2f s CPU in this process",
        time.perf_counter() - wall0,
        time.process_time() - cpu0,
    )
    return Plan(
        order=out.order,
        contexts=out.contexts,
        keys=out.keys,
        tokens=out.tokens,
        groups=out.groups,
        shared_tokens=out.shared,
        total_tokens=batch.total_tokens(),
    )


class _Assembly:
    """The plan, chunk by chunk, from each scheduled request's pids: lists
    mapped in Python, or flat arrays (from a worker) mapped through object
    arrays, which hand out references to the same objects at C speed."""

    def __init__(self, batch: _Batch, with_keys: bool) -> None:
        self.batch, self.with_keys = batch, with_keys
        self.order: list[int] = []
        self.contexts: list[list[Block]] = []
        self.keys: list[list[int]] = []
        self.tokens: list[list[int]] = []
        self.groups: list[list[int]] = []
        self.shared = 0
        self._objects: list[np.ndarray] = []

    def add_lists(
        self, chunk: np.ndarray | None, forest: Forest, o: list[int], seqs: list[list[int]]
    ) -> None:
        """``chunk``: input index of each chunk request (``None``: all, in order)."""
        b = self.batch
        scheduled = list(o) if chunk is None else chunk[np.asarray(o, dtype=np.int64)].tolist()
        self.order.extend(scheduled)
        get = b.values.__getitem__
        self.contexts.extend([list(map(get, q)) for q in seqs])
        if self.with_keys:
            get_key, get_tokens = b.keys.__getitem__, b.tokens.__getitem__
            self.keys.extend([list(map(get_key, q)) for q in seqs])
            self.tokens.extend([list(map(get_tokens, q)) for q in seqs])
        self.groups.extend(_groups(forest, o, scheduled))

    def add_flat(
        self, chunk: np.ndarray, forest: Forest, o: np.ndarray, seqs: np.ndarray, lens: np.ndarray
    ) -> None:
        if not self._objects:
            b = self.batch
            self._objects = [
                _objects(x) for x in ((b.values, b.keys, b.tokens) if self.with_keys else (b.values,))
            ]
        scheduled = chunk[o].tolist()
        self.order.extend(scheduled)
        for objs, dest in zip(self._objects, (self.contexts, self.keys, self.tokens)):
            dest.extend(_split(objs[seqs].tolist(), lens))
        self.groups.extend(_groups(forest, o, scheduled))


def _groups(forest: Forest, o: Sequence[int], scheduled: list[int]) -> list[list[int]]:
    """Split the chunk's schedule (``o``: leaves in run order; ``scheduled``:
    their input indices) into its trees. The emitter runs each tree's leaves
    contiguously, so a group ends where the root changes. O(N log depth)."""
    if len(forest.roots) <= 1:
        return [scheduled] if scheduled else []
    n = forest.n_leaves
    up = np.arange(n + len(forest.left), dtype=np.int64)  # parent, then (jumping) root
    if forest.left:
        merges = np.arange(n, len(up), dtype=np.int64)
        up[np.asarray(forest.left, dtype=np.int64)] = merges
        up[np.asarray(forest.right, dtype=np.int64)] = merges
        while True:
            nxt = up[up]
            if np.array_equal(nxt, up):
                break
            up = nxt
    root = up[np.asarray(o, dtype=np.int64)]
    cuts = (np.flatnonzero(root[1:] != root[:-1]) + 1).tolist()
    bounds = [0, *cuts, len(o)]
    return [scheduled[a:b] for a, b in zip(bounds, bounds[1:])]
