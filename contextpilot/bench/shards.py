"""Sharding benchmark: one huge batch, R engine replicas, each its own cache.

For each replica count R, the same synthetic batch (20 blocks per request,
the scale series' generator) is split three ways and every shard is planned
with the core planner:

* **contextpilot**: :func:`contextpilot.distributed.plan_shards`
  (prefix-coherent, token-balanced shards; timed end to end);
* **random**: each request to a uniformly random replica;
* **round-robin**: request ``i`` to replica ``i mod R``.

Each replica's stream is replayed through its own simulated radix cache
(``sim.RadixCacheSim``) at each capacity (a multiple of the mean prompt,
per replica); the total hit ratio is all replicas' hit tokens over all
prompt tokens. The single-process planner (``plan(..., workers=1)``) on
the whole batch, replayed on one cache, gives the reference wall time and
the one-engine hit ratio. Peak RSS covers this process and its children
(a local Ray instance started here included; shared pages count once per
process, so it overstates).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from contextpilot.bench.scale import rss_tree
from contextpilot.bench.workloads import Workload, synthetic_rag
from contextpilot.core.blocks import default_token_counter
from contextpilot.core.planner import plan
from contextpilot.distributed import ShardedPlan, plan_assigned, plan_shards
from contextpilot.distributed.shards import ReplicaStream
from contextpilot.sim.radix import RadixCacheSim
from contextpilot.sim.replay import build_prompts

__all__ = ["FULL_REQUESTS", "QUICK_REQUESTS", "replica_hits", "run", "table"]

log = logging.getLogger("contextpilot.bench")

FULL_REQUESTS = 1_000_000
QUICK_REQUESTS = 20_000
METHODS = ("contextpilot", "random", "round-robin")


def workload(n: int) -> Workload:
    """The scale series' synthetic batch: density constant as it grows."""
    return synthetic_rag(n, n_docs=max(20_000, n // 2), n_topics=max(200, n // 50), topic_size=60, seed=0)


def _mean_prompt(wl: Workload) -> float:
    tc = wl.token_counter
    blocks = sum(tc(b) for c in wl.contexts for b in c)
    queries = sum(default_token_counter(q) for q in wl.queries)
    return wl.system_tokens + (blocks + queries) / max(1, len(wl))


def replica_hits(
    streams: Sequence[ReplicaStream], wl: Workload, capacities: Sequence[float | None]
) -> list[tuple[int, int]]:
    """Per capacity: (hit tokens, prompt tokens) summed over replicas, each
    replaying its own stream on its own cache of that capacity."""
    out = [(0, 0)] * len(capacities)
    for s in streams:
        if not len(s):
            continue
        prompts = build_prompts(
            s.contexts, [wl.queries[i] for i in s.indices], wl.token_counter, wl.system_tokens
        )
        for k, cap in enumerate(capacities):
            sim = RadixCacheSim(cap)
            for keys, weights in prompts:
                sim.serve(keys, weights)
            out[k] = (out[k][0] + sim.hit_tokens, out[k][1] + sim.total_tokens)
        del prompts
    return out


class _PeakRss:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_tree(os.getpid()))
            time.sleep(0.5)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_tree(os.getpid()))


def _start_ray(executor: str) -> Any:
    if executor != "ray":
        return None
    from contextpilot.distributed.executors import require_ray

    ray = require_ray()
    if not ray.is_initialized():
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            object_store_memory=3 * 2**30,
        )
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def _dataset_seconds(ray: Any, wl: Workload, replicas: int) -> dict:
    """The Ray Data path on the same batch (from an Arrow table)."""
    import pyarrow as pa

    ds = ray.data.from_arrow(pa.table({"context": pa.array(wl.contexts)}))
    t0 = time.perf_counter()
    sp = plan_shards(ds, replicas, token_counter=wl.token_counter)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "phases": sp.seconds, "requests": sum(len(s) for s in sp.streams)}


def run(
    replica_counts: Sequence[int],
    n: int = FULL_REQUESTS,
    multipliers: Sequence[float | None] = (None, 16),
    executor: str = "ray",
    single: bool = True,
    dataset: bool = False,
    progress: Any = None,
) -> dict:
    """Run the sharding benchmark; returns the ``shards`` results entry."""
    ray = _start_ray(executor)
    with _PeakRss() as rss:
        t0 = time.perf_counter()
        wl = workload(n)
        gen_seconds = time.perf_counter() - t0
        mean = _mean_prompt(wl)
        labels = ["inf" if m is None else f"{m:g}x" for m in multipliers]
        caps = [None if m is None else m * mean for m in multipliers]

        def hits(streams: Sequence[ReplicaStream]) -> dict[str, float]:
            return {lab: h / t if t else 0.0 for lab, (h, t) in zip(labels, replica_hits(streams, wl, caps))}

        result: dict = {
            "requests": n,
            "blocks_per_request": 20,
            "executor": executor,
            "cpus": os.cpu_count(),
            "generate_seconds": gen_seconds,
            "mean_prompt_tokens": mean,
            "capacities": dict(zip(labels, caps)),
            "replicas": [],
        }
        if single:
            t0 = time.perf_counter()
            p = plan(wl.contexts, token_counter=wl.token_counter, workers=1)
            seconds = time.perf_counter() - t0
            stream = ReplicaStream(0, p.order, p.contexts)
            del p
            result["single"] = {"plan_seconds": seconds, "hit": hits([stream])}
            del stream
            _tick(progress)
        rng = np.random.default_rng(0)
        for r in replica_counts:
            row: dict = {"replicas": r, "methods": {}}
            t0 = time.perf_counter()
            ours = plan_shards(wl.contexts, r, executor=executor, token_counter=wl.token_counter)
            seconds = time.perf_counter() - t0
            row["methods"]["contextpilot"] = _method_row(ours, seconds, hits)
            del ours
            for name, assignment in (
                ("random", rng.integers(0, r, size=n)),
                ("round-robin", np.arange(n) % r),
            ):
                t0 = time.perf_counter()
                sp = plan_assigned(
                    wl.contexts, assignment, r, executor=executor, token_counter=wl.token_counter
                )
                row["methods"][name] = _method_row(sp, time.perf_counter() - t0, hits)
                del sp
            if dataset and ray is not None:
                row["dataset"] = _dataset_seconds(ray, wl, r)
            result["replicas"].append(row)
            _tick(progress)
    result["peak_rss_bytes"] = rss.peak
    return result


def _method_row(sp: ShardedPlan, seconds: float, hits: Any) -> dict:
    return {
        "plan_seconds": seconds,
        "phases": sp.seconds,
        "imbalance": sp.imbalance,
        "shared_fraction": sp.shared_tokens / sp.total_tokens if sp.total_tokens else 0.0,
        # per-shard planner time in its worker: the planning critical path
        # with one worker per replica, and the CPU time over all shards
        "shard_plan_seconds": [s.plan_seconds for s in sp.streams],
        "hit": hits(sp.streams),
    }


def _tick(progress: Any) -> None:
    if progress is not None:
        progress.update()


def table(res: dict) -> str:
    labels = list(res["capacities"])
    head = ["replicas", "sharding", *[f"hit {lab}" for lab in labels], "max/mean tokens", "wall time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(h: dict) -> list[str]:
        return [f"{h[lab]:.3f}" for lab in labels]

    if "single" in res:
        s = res["single"]
        lines.append(
            "| 1 | one engine, single-process planner | "
            + " | ".join(fmt(s["hit"]))
            + f" | — | {s['plan_seconds']:.1f} s |"
        )
    for row in res["replicas"]:
        for name in METHODS:
            m = row["methods"][name]
            lines.append(
                f"| {row['replicas']} | {name} | "
                + " | ".join(fmt(m["hit"]))
                + f" | {m['imbalance']:.3f} | {m['plan_seconds']:.1f} s |"
            )
    out = "\n".join(lines)
    for row in res["replicas"]:
        ph = row["methods"]["contextpilot"]["phases"]
        per = row["methods"]["contextpilot"].get("shard_plan_seconds") or [0.0]
        out += (
            f"\nR={row['replicas']} contextpilot phases: signatures {ph['signatures']:.1f} s, "
            f"partition {ph['partition']:.1f} s, shard planning {ph['plan']:.1f} s "
            f"(per shard in its worker: max {max(per):.1f} s, sum {sum(per):.1f} s)"
        )
        if "dataset" in row:
            out += f"; Ray Dataset input end to end {row['dataset']['seconds']:.1f} s"
    out += f"\npeak RSS (all processes) {res['peak_rss_bytes'] / 2**30:.1f} GiB"
    return out
