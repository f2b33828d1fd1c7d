"""Plan a huge batch for R engine replicas, each with its own prefix cache.

Pipeline (:func:`plan_shards`):

1. **signatures**, per chunk of ``chunk_rows`` requests, in parallel
   (:mod:`contextpilot.distributed.signatures`);
2. **partition** on the driver: prefix-coherent shards balanced by tokens
   (:mod:`contextpilot.distributed.partition`, pure numpy);
3. **plan** each shard with the core planner
   (:func:`contextpilot.core.planner.plan`), one task per shard, in
   parallel;
4. return one ordered request stream per replica, with each request's
   index in the input.

The parallel steps run on an executor (:mod:`contextpilot.distributed.executors`):
this process, local processes, or Ray tasks. A Ray Dataset input runs the
same steps as Ray Data operators (:mod:`contextpilot.distributed.ray_data`).

Invariants of a :class:`ShardedPlan`: every input index appears in exactly
one stream exactly once; ``streams[r].contexts[j]`` holds exactly the
blocks of input request ``streams[r].indices[j]``, reordered; replica
``r`` should run its stream in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np

from contextpilot.core.blocks import Block
from contextpilot.core.planner import plan
from contextpilot.core.validation import ContextError
from contextpilot.distributed.executors import Executor, get_executor
from contextpilot.distributed.partition import DEFAULT_IMBALANCE, DEFAULT_ROUNDS, partition
from contextpilot.distributed.signatures import DEFAULT_SKETCH, Signatures, signatures, validate_chunk
from contextpilot.distributed.streams import ReplicaStream, ShardedPlan

__all__ = ["DEFAULT_CHUNK_ROWS", "ReplicaStream", "ShardedPlan", "plan_assigned", "plan_shard", "plan_shards"]

#: Requests per signature task: large enough to amortise task overhead.
DEFAULT_CHUNK_ROWS = 50_000


def _is_ray_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("ray.data") and hasattr(data, "map_batches")


def _validated_chunks(data: Iterable, chunk_rows: int) -> Iterator[list[list[Block]]]:
    """Validated chunks; errors (bad blocks, empty contexts, int and str
    blocks mixed anywhere in the batch) name the position in the batch."""
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise ValueError("contexts must be an iterable of contexts (lists of int or str blocks)")
    it = iter(data)
    offset = 0
    kind: type | None = None
    while True:
        raw = list(islice(it, chunk_rows))
        if not raw:
            return
        chunk = validate_chunk(raw, offset)
        first = chunk[0][0]
        if kind is None:
            kind = type(first)
        elif type(first) is not kind:
            raise ContextError(
                f"contexts[{offset}][0]: mixed block types in one batch ({type(first).__name__} here, "
                f"{kind.__name__} earlier); use all ints or all strings",
                (offset, 0),
            )
        yield chunk
        offset += len(chunk)


def plan_shard(
    contexts: list[list[Block]], token_counter: Any = None
) -> tuple[list[int], list, int, int, float]:
    """Plan one shard: ``(order, reordered contexts, shared, total tokens,
    seconds)``. Runs in a worker; arguments and result pickle."""
    if not contexts:
        return [], [], 0, 0, 0.0
    t0 = time.perf_counter()
    p = plan(contexts, token_counter=token_counter)
    return p.order, p.contexts, p.shared_tokens, p.total_tokens, time.perf_counter() - t0


def plan_assigned(
    contexts: Sequence[Sequence[Block]],
    assignment: np.ndarray | Sequence[int],
    replicas: int,
    *,
    executor: str | Executor = "local",
    workers: int = 1,
    token_counter: Any = None,
) -> ShardedPlan:
    """Plan validated ``contexts`` already assigned to replicas (a shard per
    replica, planned in parallel on ``executor``)."""
    if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) or replicas < 1:
        raise ValueError(f"replicas must be an int >= 1, got {replicas!r}")
    a = np.asarray(assignment, dtype=np.int64)
    if a.shape != (len(contexts),):
        raise ValueError(f"assignment has {a.size} entries for {len(contexts)} contexts")
    if len(a) and (a.min() < 0 or a.max() >= replicas):
        raise ValueError(f"assignment values must be in [0, {replicas})")
    ex = get_executor(executor, workers)
    t0 = time.perf_counter()
    by_replica = np.argsort(a, kind="stable")
    bounds = np.searchsorted(a[by_replica], np.arange(replicas + 1))
    members = [by_replica[bounds[r] : bounds[r + 1]] for r in range(replicas)]
    jobs = [([contexts[i] for i in m.tolist()], token_counter) for m in members]
    results = ex.map(plan_shard, jobs)
    streams = [
        ReplicaStream(r, m[np.asarray(order, dtype=np.int64)].tolist(), ctxs, total, shared, seconds)
        for r, (m, (order, ctxs, shared, total, seconds)) in enumerate(zip(members, results))
    ]
    return ShardedPlan(streams, seconds={"plan": time.perf_counter() - t0})


def plan_shards(
    data: Any,
    replicas: int,
    *,
    executor: str | Executor | None = None,
    workers: int = 1,
    token_counter: Any = None,
    imbalance: float = DEFAULT_IMBALANCE,
    rounds: int = DEFAULT_ROUNDS,
    sketch: int = DEFAULT_SKETCH,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    column: str = "context",
    seed: int = 0,
) -> ShardedPlan:
    """Plan a batch for ``replicas`` engine replicas (see module docstring).

    ``data``: a ``ray.data.Dataset`` whose ``column`` holds each request's
    blocks (indices are row positions in the dataset's order), or any
    iterable of contexts (lists of int or str blocks; indices count from
    0). ``executor``: ``"local"`` (``workers`` processes), ``"ray"``, or an
    object with ``map(fn, args)``; default: Ray for a Dataset, local
    otherwise. ``token_counter`` must pickle (Ray uses cloudpickle, local
    processes plain pickle). ``imbalance``: the ``eps`` of the balance bound
    (:mod:`contextpilot.distributed.partition`).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) or replicas < 1:
        raise ValueError(f"replicas must be an int >= 1, got {replicas!r}")
    if _is_ray_dataset(data):
        if executor not in (None, "ray"):
            raise ValueError("a Ray Dataset is planned on Ray: use executor='ray' (or leave it unset)")
        from contextpilot.distributed.ray_data import plan_dataset

        return plan_dataset(
            data,
            replicas,
            column=column,
            token_counter=token_counter,
            imbalance=imbalance,
            rounds=rounds,
            sketch=sketch,
            batch_rows=chunk_rows,
            seed=seed,
        )
    ex = get_executor(executor or "local", workers)
    t0 = time.perf_counter()
    chunks = list(_validated_chunks(data, chunk_rows))
    sigs = Signatures.concat(ex.map(signatures, [(c, token_counter, sketch) for c in chunks]))
    t1 = time.perf_counter()
    part = partition(sigs, replicas, imbalance=imbalance, rounds=rounds, seed=seed)
    t2 = time.perf_counter()
    contexts = [row for c in chunks for row in c]
    del chunks
    out = plan_assigned(contexts, part.assignment, replicas, executor=ex, token_counter=token_counter)
    out.partition = part
    out.seconds = {
        "signatures": t1 - t0,
        "partition": t2 - t1,
        "plan": out.seconds["plan"],
        "total": time.perf_counter() - t0,
    }
    return out
