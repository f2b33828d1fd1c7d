"""Sharded planning of a ``ray.data.Dataset`` (needs the ``ray`` extra).

The same steps as :func:`contextpilot.distributed.shards.plan_shards`, as
Ray Data operators, so the requests never pass through the driver before
they are planned:

1. tag each row with a unique id and materialise (ids must stay fixed);
2. ``map_batches``: one compact signature blob per batch (the driver
   collects only these, in dataset order: a row's position is its index);
3. partition on the driver; broadcast ``uid -> (replica, index)``;
4. ``map_batches`` tags rows with their replica, ``groupby(replica)
   .map_groups`` plans each shard with the core planner;
5. the driver collects the planned rows into per-replica streams.

Order: steps 1-2 run with ``preserve_order`` so that row positions are the
dataset's order; the dataset's own DataContext setting is restored after.
"""

from __future__ import annotations

import contextlib
import pickle
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from contextpilot.core.planner import plan
from contextpilot.core.validation import ContextError
from contextpilot.distributed.executors import require_ray
from contextpilot.distributed.partition import partition
from contextpilot.distributed.signatures import Signatures, signatures, validate_chunk
from contextpilot.distributed.streams import ReplicaStream, ShardedPlan

__all__ = ["plan_dataset"]

UID = "__cp_uid"
REPLICA = "__cp_replica"
INDEX = "__cp_index"
RUN = "__cp_run"
SHARED = "__cp_shared"
TOKENS = "__cp_tokens"
SIG = "__cp_signature"
SECONDS = "__cp_seconds"


@contextlib.contextmanager
def _ordered(ds: Any) -> Iterator[None]:
    """Preserve row order while the block runs. A Dataset keeps the
    DataContext it was created under (shared with the datasets derived from
    it), so the switch is made there, and undone after."""
    ctx = ds.context
    before = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        ctx.execution_options.preserve_order = before


def _rows(col: Any) -> list[list]:
    """A batch column of per-row block arrays as Python lists."""
    return [x.tolist() if hasattr(x, "tolist") else list(x) for x in col]


def _signature_batch(batch: dict, column: str, token_counter: Any, m: int) -> dict:
    if column not in batch:
        raise ValueError(f"dataset has no column {column!r} (columns: {sorted(batch)})")
    uids = np.asarray(batch[UID], dtype=np.int64)
    try:
        rows = validate_chunk(_rows(batch[column]))
    except ContextError as e:
        i = e.path[0] if e.path else 0
        raise ValueError(f"dataset row with {UID}={int(uids[i])}, column {column!r}: {e}") from None
    blob = pickle.dumps((signatures(rows, token_counter, m), uids), protocol=5)
    return {SIG: np.array([blob], dtype=object)}


def _tag_batch(batch: dict, lookup: Any) -> dict:
    import ray

    uid_sorted, replica, index = ray.get(lookup) if isinstance(lookup, ray.ObjectRef) else lookup
    pos = np.searchsorted(uid_sorted, np.asarray(batch[UID], dtype=np.int64))
    batch[REPLICA] = replica[pos]
    batch[INDEX] = index[pos]
    return batch


def _plan_group(batch: dict, column: str, token_counter: Any) -> dict:
    contexts = _rows(batch[column])
    t0 = time.perf_counter()
    p = plan(contexts, token_counter=token_counter)
    seconds = time.perf_counter() - t0
    n = len(contexts)
    order = np.asarray(p.order, dtype=np.int64)
    out = np.empty(n, dtype=object)
    out[:] = p.contexts
    return {
        REPLICA: np.asarray(batch[REPLICA])[order],
        RUN: np.arange(n, dtype=np.int64),
        INDEX: np.asarray(batch[INDEX], dtype=np.int64)[order],
        column: out,
        SHARED: np.full(n, p.shared_tokens, dtype=np.int64),
        TOKENS: np.full(n, p.total_tokens, dtype=np.int64),
        SECONDS: np.full(n, seconds),
    }


def plan_dataset(
    ds: Any,
    replicas: int,
    *,
    column: str = "context",
    token_counter: Any = None,
    imbalance: float,
    rounds: int,
    sketch: int,
    batch_rows: int,
    seed: int = 0,
) -> ShardedPlan:
    """See :func:`contextpilot.distributed.shards.plan_shards`."""
    ray = require_ray()
    from ray.data.expressions import monotonically_increasing_id

    t0 = time.perf_counter()
    with _ordered(ds):
        ds = ds.with_column(UID, monotonically_increasing_id()).materialize()
        sig_ds = ds.map_batches(
            _signature_batch,
            fn_kwargs={"column": column, "token_counter": token_counter, "m": sketch},
            batch_format="numpy",
            batch_size=batch_rows,
        )
        parts, uid_parts = [], []
        for b in sig_ds.iter_batches(batch_format="numpy", batch_size=None):
            for blob in b[SIG]:
                s, u = pickle.loads(blob)
                parts.append(s)
                uid_parts.append(u)
    sigs = Signatures.concat(parts)
    uids = np.concatenate(uid_parts) if uid_parts else np.zeros(0, dtype=np.int64)
    t1 = time.perf_counter()
    part = partition(sigs, replicas, imbalance=imbalance, rounds=rounds, seed=seed)
    t2 = time.perf_counter()
    acc: list[list[tuple[int, int, list]]] = [[] for _ in range(replicas)]
    stats = [(0, 0, 0.0)] * replicas
    if len(uids):
        o = np.argsort(uids, kind="stable")
        tc = token_counter
        lookup = ray.put((uids[o], part.assignment[o], o.astype(np.int64)))
        planned = (
            ds.map_batches(_tag_batch, fn_kwargs={"lookup": lookup}, batch_format="numpy")
            .groupby(REPLICA, num_partitions=replicas)
            .map_groups(_plan_group, fn_kwargs={"column": column, "token_counter": tc}, batch_format="numpy")
        )
        for b in planned.iter_batches(batch_format="numpy", batch_size=None):
            rep, run, idx = b[REPLICA].tolist(), b[RUN].tolist(), b[INDEX].tolist()
            for r, j, i, blocks in zip(rep, run, idx, _rows(b[column])):
                acc[r].append((j, i, blocks))
            for r, sh, tk, sec in zip(rep, b[SHARED].tolist(), b[TOKENS].tolist(), b[SECONDS].tolist()):
                stats[r] = (tk, sh, sec)
    streams = []
    for r, items in enumerate(acc):
        items.sort(key=lambda t: t[0])
        tokens, shared, sec = stats[r]
        streams.append(
            ReplicaStream(r, [i for _, i, _ in items], [c for _, _, c in items], tokens, shared, sec)
        )
    t3 = time.perf_counter()
    return ShardedPlan(
        streams,
        part,
        {"signatures": t1 - t0, "partition": t2 - t1, "plan": t3 - t2, "total": t3 - t0},
    )
