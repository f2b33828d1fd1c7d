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

import ctypes
import gc
import logging
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
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


@dataclass
class _Batch:
    """A batch in flat form: request ``i`` is ``pids[starts[i]:starts[i + 1]]``.

    Planning ids: the first copy of a block in a request is the block's
    dense id; a k-th copy gets an id of its own (shared across requests).
    ``tokens``/``values``/``keys`` are indexed by planning id."""

    pids: np.ndarray
    starts: np.ndarray
    tokens: list[int]
    values: list[Block]
    keys: list[int]

    def rows(self, idx: np.ndarray | None = None) -> list[list[int]]:
        """Requests (all, or those at ``idx``) as lists of pids."""
        pids, lens = (self.pids, np.diff(self.starts)) if idx is None else self.gather(idx)
        return _split(pids.tolist(), lens)

    def gather(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pids of the requests at ``idx``, concatenated, and their lengths."""
        lens = self.starts[idx + 1] - self.starts[idx]
        offs = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        pos = np.repeat(self.starts[idx] - offs[:-1], lens) + np.arange(offs[-1], dtype=np.int64)
        return self.pids[pos], lens


def _split(flat: Any, lens: np.ndarray) -> list[Any]:
    """``flat`` cut into consecutive pieces of lengths ``lens``."""
    if len(lens) and (lens == lens[0]).all():
        step = int(lens[0])
        if step:
            return [flat[i : i + step] for i in range(0, step * len(lens), step)]
        return [flat[:0] for _ in range(len(lens))]
    ends = np.cumsum(lens).tolist()
    return [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def _items(contexts: Sequence[Sequence[Block]], table: BlockTable, with_keys: bool) -> _Batch:
    """Intern the batch and number its planning ids (see :class:`_Batch`).
    O(total blocks) numpy work; Python work only for requests that repeat
    a block."""
    pids, starts = table.intern_flat(contexts)
    n = len(table)
    if n + len(pids) < 2**31:  # room for every extra copy: half the memory and bandwidth
        pids = pids.astype(np.int32)
    values = list(table.block_list)
    tokens = list(table.token_list)
    base = None  # pid -> dense block id, once there are extra copies
    extra: dict[tuple[int, int], int] = {}
    for r in _rows_with_repeats(pids, starts).tolist():
        a, b = int(starts[r]), int(starts[r + 1])
        row = pids[a:b].tolist()
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
        pids[a:b] = row
    keys = [table.key(i) for i in (range(n) if base is None else base)] if with_keys else []
    return _Batch(pids, starts, tokens, values, keys)


def _rows_with_repeats(ids: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the rows holding some id more than once."""
    lens = np.diff(starts)
    n = len(lens)
    width = int(lens.max(initial=0))
    if width < 2:
        return np.zeros(0, dtype=np.int64)
    if n * width > 2 * len(ids) + 1024:  # too ragged to pad: check row by row
        rows = _split(ids.tolist(), lens)
        return np.asarray([r for r, row in enumerate(rows) if len(set(row)) != len(row)], dtype=np.int64)
    if (lens == width).all():
        table = np.sort(ids.reshape(n, width), axis=1)
    else:
        # pad with distinct negatives, which never equal an id or each other
        table = np.empty((n, width), dtype=ids.dtype)
        table[:] = -1 - np.arange(width, dtype=ids.dtype)
        shift = np.arange(0, n * width, width, dtype=np.int64) - starts[:-1]
        table.reshape(-1)[np.arange(len(ids), dtype=np.int64) + np.repeat(shift, lens)] = ids
        table.sort(axis=1)
    return np.flatnonzero((table[:, 1:] == table[:, :-1]).any(axis=1))


def _chunks(batch: _Batch, freq: np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """Request indices of each chunk: consecutive runs of ``chunk_size`` in
    a sort by each request's most frequent blocks (``freq``: requests
    holding each pid)."""
    n = len(batch.starts) - 1
    if n <= chunk_size:
        return [np.arange(n, dtype=np.int64)]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(batch.starts))
    cols = batch.pids
    order = np.argsort(_popular_key(rows, cols, n, freq), kind="stable")
    return [order[i : i + chunk_size] for i in range(0, n, chunk_size)]


@dataclass
class _ChunkPlan:
    left: list[int]
    right: list[int]
    roots: list[int]
    shared: int
    #: schedule (indices into the chunk) and each scheduled request's pids,
    #: flat (cut by ``lens``), when planned without live state
    order: np.ndarray | None = None
    seqs: np.ndarray | None = None
    lens: np.ndarray | None = None


def _plan_chunk(
    pids: np.ndarray, lens: np.ndarray, tokens: np.ndarray, k: int, backend: str, emit: bool
) -> _ChunkPlan:
    """Forest (and, without live state, the layout) of one chunk: requests
    given flat (``pids`` cut by ``lens``), token length per pid. Runs in
    this process or a worker; arguments and result pickle compactly."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        requests = _split(pids.tolist(), lens)
        tok = tokens.tolist()
        forest = build_forest([frozenset(r) for r in requests], tok, k=k, backend=backend)
        out = _ChunkPlan(forest.left, forest.right, forest.roots, int(forest.savings(tok)))
        if emit:
            o, seqs = Emitter(PlanItems([], tok, requests)).emit(forest, requests)
            out.order = np.asarray(o, dtype=np.int64)
            out.seqs, out.lens = _flat(seqs, pids.dtype)
        return out
    finally:
        if gc_was_on:
            gc.enable()


def _flat(seqs: list[list[int]], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    lens = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    return np.fromiter(chain.from_iterable(seqs), dtype=dtype, count=int(lens.sum())), lens


def _objects(xs: list) -> np.ndarray:
    """``xs`` as an object array: fancy indexing then ``tolist`` hands out
    references to the same objects, at C speed."""
    out = np.empty(len(xs), dtype=object)
    out[:] = xs
    return out


def _worker_init() -> None:
    """Each worker keeps the memory it frees for reuse (glibc ``mallopt``;
    a no-op elsewhere): chunk after chunk allocates and frees the same large
    arrays, and handing them back to the OS each time costs page faults
    (about a tenth of a worker's CPU time). A worker's footprint stays at
    its peak, which it reaches on every chunk anyway."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)  # the interpreter's own C library
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)
    except (OSError, AttributeError):
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


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
    pool = ProcessPoolExecutor(
        max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )
    for _ in range(n_workers):
        pool.submit(_warm)
    return pool


def _chunk_plans(
    pool: ProcessPoolExecutor | None,
    batch: _Batch,
    chunks: list[np.ndarray],
    k: int,
    backend: str,
    emit: bool,
):
    """Plans of the chunks, in chunk order. With a pool, every chunk is
    submitted at once (compact arrays), so workers run ahead while the
    parent assembles the earlier ones."""
    tokens = np.asarray(batch.tokens, dtype=np.int64)
    parts = (batch.gather(c) for c in chunks)
    if pool is None:
        for pids, lens in parts:
            yield _plan_chunk(pids, lens, tokens, k, backend, emit)
        return
    futures = [pool.submit(_plan_chunk, pids, lens, tokens, k, backend, emit) for pids, lens in parts]
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
    batch = _items(contexts, table, with_keys)
    emitter = Emitter(PlanItems(batch.keys, batch.tokens, []), index, recent)
    live = emitter.index is not None or emitter.recent is not None
    freq = np.bincount(batch.pids, minlength=len(batch.tokens))
    chunks = _chunks(batch, freq, chunk_size)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    _log.debug(
        "planner: %d requests, %d blocks, %d chunks ready in %.2f s CPU, %.2f s wall",
        len(batch.starts) - 1,
        len(batch.pids),
        len(chunks),
        cpu,
        wall,
        extra={"planner_phase": "chunks_ready", "cpu_seconds": cpu, "wall_seconds": wall},
    )
    order: list[int] = []
    out: list[list[Block]] = []
    keys: list[list[int]] = []
    tokens: list[list[int]] = []
    groups: list[list[int]] = []
    shared = 0
    values = _objects(batch.values)
    if with_keys:
        key_objs, token_objs = _objects(batch.keys), _objects(batch.tokens)
    for chunk, cp in zip(chunks, _chunk_plans(pool, batch, chunks, k, backend, not live)):
        if live:
            part = batch.rows(chunk)
            forest = _forest_of(part, cp)
            o, seq_list = emitter.emit(forest, part)
            o = np.asarray(o, dtype=np.int64)
            seqs, lens = _flat(seq_list, batch.pids.dtype)
        else:
            assert cp.order is not None and cp.seqs is not None and cp.lens is not None
            forest = Forest(len(chunk), cp.left, cp.right, [], cp.roots)
            o, seqs, lens = cp.order, cp.seqs, cp.lens
        shared += cp.shared
        scheduled = chunk[o].tolist()
        order.extend(scheduled)
        out.extend(_split(values[seqs].tolist(), lens))
        if with_keys:
            keys.extend(_split(key_objs[seqs].tolist(), lens))
            tokens.extend(_split(token_objs[seqs].tolist(), lens))
        groups.extend(_groups(forest, o, scheduled))
    _log.debug(
        "planner: planned in %.2f s wall; %.2f s CPU in this process",
        time.perf_counter() - wall0,
        time.process_time() - cpu0,
    )
    return Plan(
        order=order,
        contexts=out,
        keys=keys,
        tokens=tokens,
        groups=groups,
        shared_tokens=shared,
        total_tokens=sum(map(int.__mul__, freq.tolist(), batch.tokens)),
    )


def _groups(forest: Forest, o: np.ndarray, scheduled: list[int]) -> list[list[int]]:
    """Split the chunk's schedule (``o``: leaves in run order; ``scheduled``:
    their input indices) into its trees. The emitter runs each tree's leaves
    contiguously, so a group ends where the root changes. O(N log depth)."""
    if not len(o):
        return []
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
    root = up[o]
    cuts = (np.flatnonzero(root[1:] != root[:-1]) + 1).tolist()
    bounds = [0, *cuts, len(o)]
    return [scheduled[a:b] for a, b in zip(bounds, bounds[1:])]
