"""Routed ``/reorder`` batches: planning time and cache hits over replicas.

What the server does with a stateful ``/reorder`` batch when it fronts
several engine replicas, without HTTP: the replicas of
:func:`~contextpilot.server.replicas.build_replicas` (one live index each,
default token counter, ``--capacity-tokens`` per replica), their router's
placement, and :func:`~contextpilot.core.fanout.reorder_over`. A synthetic
RAG stream (topic clusters, popularity skew; blocks are int ids) is cut
into ``rounds`` consecutive batches; each batch is routed, planned and
recorded, then each replica's share is served, in the returned order, by a
capacity-limited prefix cache (:class:`RadixCacheSim`, same capacity).

Figures per run: planning wall seconds per batch (median and total, the
``reorder_over`` call), engine hit ratio (cached prompt tokens / prompt
tokens, over all replicas, from the simulated caches), the index's own
estimate (``cached_tokens_estimate`` summed), and the replicas' share of
the requests (max / mean).

    python -m contextpilot.bench.routing_batch --replicas 4 --batch 5000 --rounds 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from contextpilot.bench import workloads as W
from contextpilot.core.blocks import BlockTable
from contextpilot.core.fanout import reorder_over
from contextpilot.server.config import ServerConfig
from contextpilot.server.replicas import build_replicas
from contextpilot.sim.radix import RadixCacheSim

__all__ = ["main", "run_batches"]


def run_batches(
    replicas: int = 4,
    batch: int = 2000,
    rounds: int = 4,
    capacity_blocks: int | None = 2000,
    topics: int = 200,
    seed: int = 0,
    workers: int = 1,
) -> dict[str, Any]:
    """One run (see the module docstring); ``capacity_blocks``: per
    replica, in id blocks (64 tokens each; ``None``: unbounded)."""
    wl = W.synthetic_rag(batch * rounds, n_topics=topics, seed=seed)
    table = BlockTable()
    block_tokens = table.tokens(table.intern(0))
    capacity = None if capacity_blocks is None else float(capacity_blocks * block_tokens)
    urls = ",".join(f"http://127.0.0.1:{9 + r}" for r in range(replicas))
    config = ServerConfig(infer_api_url=urls, capacity_tokens=capacity, planning_workers=workers)
    reps = build_replicas(config)
    pilots = [x.pilot for x in reps]
    sims = [RadixCacheSim(capacity) for _ in range(replicas)]
    seconds: list[float] = []
    hit = total = estimate = 0
    counts = [0] * replicas
    for b in range(rounds):
        ctxs = wl.contexts[b * batch : (b + 1) * batch]
        t0 = time.perf_counter()
        out = reorder_over(pilots, ctxs, place=reps.placement() if replicas > 1 else None)
        seconds.append(time.perf_counter() - t0)
        r = out.result
        estimate += sum(r.cached_tokens)
        placed = out.placed or [0] * len(r.reordered)
        for ctx, p in zip(r.reordered, placed):
            keys, toks = table.measure(ctx)
            hit += sims[p].serve(keys, toks)
            total += sum(toks)
            counts[p] += 1
    mean = sum(counts) / replicas
    return {
        "replicas": replicas,
        "batch": batch,
        "rounds": rounds,
        "capacity_blocks": capacity_blocks,
        "plan_median_s": round(statistics.median(seconds), 4),
        "plan_total_s": round(sum(seconds), 4),
        "plan_s": [round(s, 4) for s in seconds],
        "hit_ratio": round(hit / total, 6) if total else 0.0,
        "hit_tokens": hit,
        "prompt_tokens": total,
        "index_estimate_tokens": estimate,
        "requests_max_over_mean": round(max(counts) / mean, 4) if mean else 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m contextpilot.bench.routing_batch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2000, help="contexts per /reorder batch")
    ap.add_argument("--rounds", type=int, default=4, help="consecutive batches")
    ap.add_argument("--capacity-blocks", type=int, default=2000, help="per replica; 0: unbounded")
    ap.add_argument("--topics", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="planning worker processes per pilot")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    fig = run_batches(
        args.replicas,
        args.batch,
        args.rounds,
        args.capacity_blocks or None,
        args.topics,
        args.seed,
        args.workers,
    )
    print(json.dumps(fig))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(fig, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
