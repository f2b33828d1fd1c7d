"""Planning: block order within each request and the order to run them.

``plan`` is the one entry point for batch and online use: it interns the
batch (:mod:`contextpilot.core.batch`), groups the requests into a
prefix-sharing forest (:mod:`contextpilot.core.cluster`), then lays each
request out along it (:mod:`contextpilot.core.order`), following what the
live index says the engine holds. A batch of one is the online case.

Huge batches are cut, along a similarity sort, into chunks of at most
``chunk_size`` requests, planned in parallel worker processes
(:mod:`contextpilot.core.workers`), which bounds memory per process;
requests that share blocks sort together, so little reuse crosses a cut.
Workers are started first, so their start-up overlaps the interning; the
caller assembles chunk j while they plan the following ones. The plan does
not depend on the number of workers.

Cost: near-linear in the total number of blocks (see the cluster module).
Per-phase CPU seconds are returned in :attr:`Plan.timings`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from contextpilot.core.batch import FLAT_MIN_BLOCKS, Batch, as_objects, chunk_indices, intern_batch, split
from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.cluster import KERNEL_MIN_CLUSTERS, Forest, build_forest
from contextpilot.core.gcpause import gc_paused
from contextpilot.core.index import PrefixIndex
from contextpilot.core.order import Emitter, PlanItems
from contextpilot.core.recent import RecentRequests
from contextpilot.core.workers import WorkerPool

__all__ = ["FlatSchedule", "Plan", "PlanOptions", "plan"]

_log = logging.getLogger(__name__)

DEFAULT_CHUNK = 100_000


@dataclass(frozen=True)
class PlanOptions:
    """How to plan (the plan itself depends on ``k`` and ``chunk_size`` only).

    ``k``: candidate partners per request; ``chunk_size``: requests per
    independently planned chunk of a huge batch; ``backend``: ``"scipy"``
    or ``"torch"`` for the overlap product; ``workers``: processes planning
    chunks in parallel (1: none); ``with_keys``: return stable block keys
    and token lengths per scheduled request as lists (default: when live
    state is given); ``flat``: return the schedule as flat arrays
    (:class:`FlatSchedule`), what bulk recording into the index reads;
    ``kernel_min``: chunks of at least this many requests merge in compiled
    code (see :mod:`contextpilot.core.merge_kernel`; the plan
    does not depend on it)."""

    k: int = 6
    chunk_size: int = DEFAULT_CHUNK
    backend: str = "scipy"
    workers: int = 1
    with_keys: bool | None = None
    flat: bool = False
    kernel_min: int = KERNEL_MIN_CLUSTERS

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


@dataclass
class FlatSchedule:
    """The schedule as arrays: request j sent ``pids[offs[j]:offs[j + 1]]``
    (``offs`` = cumulative ``lens``); ``keys``/``tokens`` are indexed by pid
    (stable 64-bit block keys as uint64, token lengths)."""

    pids: np.ndarray
    lens: np.ndarray
    keys: np.ndarray
    tokens: np.ndarray


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
    #: the schedule as arrays (``PlanOptions.flat``)
    flat: FlatSchedule | None = field(default=None, compare=False, repr=False)
    #: CPU seconds per phase (worker phases summed over workers), wall
    #: seconds (``wall``) and worker processes used (``workers``)
    timings: dict[str, float] = field(default_factory=dict, compare=False, repr=False)


def plan(
    contexts: Sequence[Sequence[Block]],
    *,
    token_counter: Any = None,
    table: BlockTable | None = None,
    index: PrefixIndex | None = None,
    recent: RecentRequests | None = None,
    options: PlanOptions | None = None,
    **settings: Any,
) -> Plan:
    """Plan already-validated contexts (see ``validation.validate_contexts``).

    ``index``/``recent``: live state to follow (read only here; the caller
    records what was sent). ``options`` (or its fields as keywords, e.g.
    ``workers=2``): see :class:`PlanOptions`. Workers are plain child
    processes that never import ``__main__``, so no guard is needed in the
    calling script. Deterministic for the same inputs and state, whatever
    ``workers``.
    """
    opts = dataclasses.replace(options or PlanOptions(), **settings)
    with gc_paused():  # millions of small containers: the cyclic GC only costs here
        n_workers = min(opts.workers, -(-len(contexts) // opts.chunk_size))
        # workers load the compiled merge kernel while this process interns
        warm = (
            (__name__, "contextpilot.core.merge_kernel:warm_up") if opts.chunk_size >= opts.kernel_min else ()
        )
        with WorkerPool(n_workers if n_workers > 1 else 0, warm=warm or (__name__,)) as pool:
            return _plan_with(pool, contexts, token_counter, table, index, recent, opts)


@dataclass
class _ChunkPlan:
    left: list[int]
    right: list[int]
    roots: list[int]
    shared: int
    #: schedule (indices into the chunk) and each scheduled request's pids,
    #: when planned without live state: arrays, the pids flat, cut by ``lens``
    order: Any = None
    seqs: Any = None
    lens: np.ndarray | None = None
    #: CPU seconds: candidates, merging, emission
    timings: dict[str, float] = field(default_factory=dict)


def _plan_chunk(
    requests: list[list[int]],
    tokens: list[int],
    k: int,
    backend: str,
    emit: bool,
    kernel_min: int,
    dtype: Any = np.int64,
) -> _ChunkPlan:
    """Forest and, without live state, the layout of one chunk, flat:
    ``order``, the scheduled requests' pids (``seqs``, as ``dtype``) and
    their ``lens``, as arrays (no list per request)."""
    with gc_paused():
        timings: dict[str, float] = {}
        sets = [frozenset(r) for r in requests]
        forest = build_forest(sets, tokens, k=k, backend=backend, timings=timings, kernel_min=kernel_min)
        del sets  # the forest's leaves hold the same sets
        out = _ChunkPlan(
            forest.left, forest.right, forest.roots, int(forest.savings(tokens)), timings=timings
        )
        if emit:
            t0 = time.thread_time()
            order, flat, lens = Emitter(PlanItems([], tokens, requests)).emit_plain(forest, requests)
            out.order = np.array(order, dtype=np.int64)
            out.lens = np.array(lens, dtype=np.int64)
            out.seqs = np.array(flat, dtype=dtype)
            timings["emission"] = time.thread_time() - t0
        return out


def _plan_chunk_flat(
    pids: np.ndarray, lens: np.ndarray, tokens: np.ndarray, k: int, backend: str, emit: bool, kernel_min: int
) -> _ChunkPlan:
    """:func:`_plan_chunk` in a worker: the requests come flat (``pids``
    cut by ``lens``) and the layout goes back flat; both pickle compactly."""
    t0 = time.thread_time()
    out = _plan_chunk(split(pids.tolist(), lens), tokens.tolist(), k, backend, emit, kernel_min, pids.dtype)
    out.timings["worker_total"] = time.thread_time() - t0
    return out


def _forest_of(requests: list[list[int]], cp: _ChunkPlan) -> Forest:
    inter = [frozenset(r) for r in requests]
    for a, b in zip(cp.left, cp.right):
        inter.append(inter[a] & inter[b])
    return Forest(len(requests), cp.left, cp.right, inter, cp.roots)


def _chunk_plans(pool: WorkerPool, batch: Batch, chunks: list[np.ndarray], opts: PlanOptions, emit: bool):
    """Plans of the chunks, in chunk order: on the pool's workers (each
    chunk's arrays are gathered when it is sent), or here."""
    if pool.size == 0 or len(chunks) == 1:
        for c in chunks:
            yield _plan_chunk(
                batch.lists(c if len(chunks) > 1 else None),
                batch.tokens,
                opts.k,
                opts.backend,
                emit,
                opts.kernel_min,
            )
        return
    tokens = np.asarray(batch.tokens, dtype=np.int64)

    def task(c: np.ndarray):
        return lambda: (*batch.gather(c), tokens, opts.k, opts.backend, emit, opts.kernel_min)

    # plan() starts a pool per call: free each worker once it has no chunk left
    yield from pool.map([(_plan_chunk_flat, task(c)) for c in chunks], retire=True)


def _plan_with(pool, contexts, token_counter, table, index, recent, opts: PlanOptions) -> Plan:
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    timings: dict[str, float] = {"workers": float(pool.size)}
    table = table if table is not None else BlockTable(token_counter)
    with_keys = opts.with_keys if opts.with_keys is not None else index is not None or recent is not None
    flat = len(contexts) > opts.chunk_size or sum(map(len, contexts)) >= FLAT_MIN_BLOCKS
    batch = intern_batch(contexts, table, with_keys or opts.flat, flat)
    emitter = Emitter(PlanItems(batch.keys, batch.tokens, []), index, recent)
    live = emitter.index is not None or emitter.recent is not None
    t1 = time.thread_time()
    timings["interning"] = t1 - cpu0
    chunks = chunk_indices(batch, opts.chunk_size)
    t2 = time.thread_time()
    timings["chunking"] = t2 - t1
    _log.debug(
        "planner: %d requests in %d chunks on %d worker processes %s, ready in %.2f s CPU, %.2f s wall",
        len(contexts),
        len(chunks),
        pool.size,
        pool.pids,
        t2 - cpu0,
        time.perf_counter() - wall0,
        extra={
            "planner_phase": "chunks_ready",
            "cpu_seconds": t2 - cpu0,
            "wall_seconds": time.perf_counter() - wall0,
        },
    )
    out = _Assembly(batch, with_keys, opts.flat)
    whole = len(chunks) == 1
    waited = 0.0
    plans = _chunk_plans(pool, batch, chunks, opts, not live)
    for chunk in chunks:
        w0 = time.perf_counter()
        cp = next(plans)
        waited += time.perf_counter() - w0 if pool.size else 0.0
        for name, v in cp.timings.items():
            timings[name] = timings.get(name, 0.0) + v
        out.shared += cp.shared
        a0 = time.thread_time()
        if cp.lens is not None:  # laid out flat (without live state), here or in a worker
            forest = Forest(len(chunk), cp.left, cp.right, [], cp.roots)
            out.add_flat(chunk, forest, cp.order, cp.seqs, cp.lens)
            timings["assembly"] = timings.get("assembly", 0.0) + time.thread_time() - a0
            continue
        e0 = time.thread_time()
        part = batch.lists(None if whole else chunk)
        forest = _forest_of(part, cp)
        o, seqs = emitter.emit(forest, part)
        a0 = time.thread_time()
        timings["emission"] = timings.get("emission", 0.0) + a0 - e0
        out.add_lists(None if whole else chunk, forest, o, seqs)
        timings["assembly"] = timings.get("assembly", 0.0) + time.thread_time() - a0
    timings.pop("worker_total", None)
    timings["waiting_wall"] = waited
    timings["this_process"] = time.thread_time() - cpu0
    timings["wall"] = time.perf_counter() - wall0
    _log.debug(
        "planner: planned in %.2f s wall, %.2f s CPU in this thread", timings["wall"], timings["this_process"]
    )
    return Plan(
        order=out.order,
        contexts=out.contexts,
        keys=out.keys,
        tokens=out.tokens,
        groups=out.groups,
        shared_tokens=out.shared,
        total_tokens=batch.total_tokens(),
        flat=out.flat_schedule(),
        timings=timings,
    )


class _Assembly:
    """The plan, chunk by chunk, from each scheduled request's pids: lists
    mapped in Python, or flat arrays (from a worker) mapped through object
    arrays, which hand out references to the same objects at C speed."""

    def __init__(self, batch: Batch, with_keys: bool, flat: bool) -> None:
        self.batch, self.with_keys, self.flat = batch, with_keys, flat
        self.order: list[int] = []
        self.contexts: list[list[Block]] = []
        self.keys: list[list[int]] = []
        self.tokens: list[list[int]] = []
        self.groups: list[list[int]] = []
        self.shared = 0
        self._objects: list[np.ndarray] = []
        self._pids: list[np.ndarray] = []
        self._lens: list[np.ndarray] = []

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
        if self.flat:
            lens = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
            self._lens.append(lens)
            self._pids.append(np.fromiter(chain.from_iterable(seqs), dtype=np.int64, count=int(lens.sum())))
        self.groups.extend(_groups(forest, o, scheduled))

    def add_flat(
        self, chunk: np.ndarray, forest: Forest, o: np.ndarray, seqs: np.ndarray, lens: np.ndarray
    ) -> None:
        if not self._objects:
            b = self.batch
            self._objects = [
                as_objects(x) for x in ((b.values, b.keys, b.tokens) if self.with_keys else (b.values,))
            ]
        scheduled = chunk[o].tolist()
        self.order.extend(scheduled)
        same = len(lens) > 0 and lens[0] > 0 and bool((lens == lens[0]).all())
        for objs, dest in zip(self._objects, (self.contexts, self.keys, self.tokens)):
            picked = objs[seqs]
            # equal lengths (the usual top-k batch): numpy builds the row lists itself
            dest.extend(picked.reshape(len(lens), -1).tolist() if same else split(picked.tolist(), lens))
        if self.flat:
            self._pids.append(seqs)
            self._lens.append(lens)
        self.groups.extend(_groups(forest, o, scheduled))

    def flat_schedule(self) -> FlatSchedule | None:
        if not self.flat:
            return None
        b = self.batch
        empty = np.zeros(0, dtype=np.int64)
        return FlatSchedule(
            pids=np.concatenate(self._pids) if self._pids else empty,
            lens=np.concatenate(self._lens) if self._lens else empty,
            keys=np.asarray(b.keys, dtype=np.uint64),
            tokens=np.asarray(b.tokens, dtype=np.int64),
        )


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
