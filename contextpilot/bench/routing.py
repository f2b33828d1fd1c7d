"""Routing across engine replicas: cache-aware vs round-robin vs random.

An online replay (requests arrive one by one at a fixed rate) over R
replicas, each a capacity-limited prefix cache (:class:`RadixCacheSim`) with
its own live index (a :class:`ContextPilot` told that capacity, as the
server keeps one per replica). Each request is routed by the same
:class:`~contextpilot.server.router.Router` the server uses, planned
against the chosen replica's index (contextpilot's online order), and
served there. Arrivals are Poisson (seeded, identical for every policy) at
``load`` times the rate the replicas could serve with no cache at all.
Service is a queue per replica: a request takes
``overhead_ms + ms_per_token * uncached tokens`` after the previous one on
that replica finishes, so the router sees real in-flight counts and cache
hits shorten the queues.

Figures: hit ratio (cached prompt tokens / all prompt tokens, over all
replicas); balance (max / mean requests per replica, and max / mean prefill
work); mean and p99 latency (queueing + prefill, simulated ms); routing
cost per decision (measured, µs). Orders: ``conversation`` (each
conversation's questions in turn, the bench's online order) and
``interleaved`` (conversations take turns: many users at once).

    python -m contextpilot.bench.routing --replicas 4
    python -m contextpilot.bench --routing-replicas 4   # same, inside the main bench
"""

from __future__ import annotations

import argparse
import heapq
import logging
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from contextpilot.bench import workloads as W
from contextpilot.core.blocks import BlockTable
from contextpilot.core.pilot import ContextPilot
from contextpilot.server.router import POLICIES, Router
from contextpilot.sim.radix import RadixCacheSim

__all__ = ["RoutingRow", "interleave", "main", "replay_routed", "run_routing", "table"]

log = logging.getLogger("contextpilot.bench")

#: simulated engine: fixed cost per request and prefill cost per uncached token
OVERHEAD_MS = 2.0
MS_PER_TOKEN = 0.02


@dataclass
class RoutingRow:
    workload: str
    order: str
    capacity: str
    policy: str
    replicas: int
    hit_ratio: float
    requests: list[int]
    balance: float
    work_balance: float
    mean_latency_ms: float
    p99_latency_ms: float
    route_us: float

    def to_dict(self) -> dict:
        return asdict(self)


def interleave(wl: W.Workload) -> list[int]:
    """Request order where conversations (groups) take turns."""
    by: dict[int, list[int]] = {}
    for i, g in enumerate(wl.groups or [0] * len(wl)):
        by.setdefault(g, []).append(i)
    queues = list(by.values())
    out: list[int] = []
    depth = 0
    while len(out) < len(wl):
        out += [q[depth] for q in queues if depth < len(q)]
        depth += 1
    return out


def _max_mean(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return max(xs) / m if m else 1.0


def replay_routed(
    wl: W.Workload,
    order: Sequence[int],
    replicas: int,
    policy: str,
    capacity: float | None,
    load: float = 0.8,
    max_inflight: int | None = None,
    max_imbalance: int | None = 2,
    min_match: float = 0.0,
    seed: int = 0,
) -> dict:
    """Replay ``wl`` in ``order`` over ``replicas`` simulated engines.

    ``load``: arrival rate as a share of what the replicas could serve with
    no cache at all (so < 1 keeps round-robin stable; caching only helps).
    Returns the figures of :class:`RoutingRow` (without labels).
    """
    pilots = [ContextPilot(capacity_tokens=capacity, token_counter=wl.token_counter) for _ in range(replicas)]
    sims = [RadixCacheSim(capacity) for _ in range(replicas)]
    router = Router(
        [p.index for p in pilots],
        policy,
        max_inflight=[max_inflight] * replicas,
        max_imbalance=max_imbalance,
        min_match=min_match,
        seed=seed,
    )
    table, qtable = BlockTable(wl.token_counter), BlockTable()
    sys_tokens = wl.system_tokens
    # prompt tokens with no cache: sets the arrival rate
    mean_tokens = sys_tokens + sum(sum(map(wl.token_counter, c)) for c in wl.contexts) / max(1, len(wl))
    gap = (OVERHEAD_MS + MS_PER_TOKEN * mean_tokens) / (replicas * load)
    arrivals = random.Random(seed)  # Poisson arrivals, the same for every policy
    free_at = [0.0] * replicas
    done: list[tuple[float, int, object]] = []
    hits = total = 0
    counts, work = [0] * replicas, [0.0] * replicas
    latencies: list[float] = []
    route_s = 0.0
    now = 0.0
    for n, i in enumerate(order):
        now += arrivals.expovariate(1.0 / gap)
        while done and done[0][0] <= now:
            heapq.heappop(done)[2].release()  # type: ignore[attr-defined]
        ctx = wl.contexts[i]
        t0 = time.perf_counter()
        ids = [table.intern(b) for b in ctx]
        keys, toks = [table.key(j) for j in ids], [table.tokens(j) for j in ids]
        est = router.set_hits(keys, toks) if policy == "cache-aware" else None
        d, lease = router.route(est, sum(toks))
        route_s += time.perf_counter() - t0
        r = d.replica
        planned = pilots[r].reorder_detailed([ctx]).reordered[0]
        pkeys = [0] + [2 * table.intern(b) + 1 for b in planned] + [2 * qtable.intern(wl.queries[i]) + 2]
        weights = [sys_tokens] + [table.tokens(table.intern(b)) for b in planned]
        weights.append(qtable.tokens(qtable.intern(wl.queries[i])))
        hit = sims[r].serve(pkeys, weights)
        size = sum(weights)
        hits += hit
        total += size
        service = OVERHEAD_MS + MS_PER_TOKEN * (size - hit)
        start = max(now, free_at[r])
        free_at[r] = start + service
        latencies.append(free_at[r] - now)
        counts[r] += 1
        work[r] += service
        heapq.heappush(done, (free_at[r], n, lease))
    latencies.sort()
    return {
        "hit_ratio": hits / total if total else 0.0,
        "requests": counts,
        "balance": _max_mean(counts),
        "work_balance": _max_mean(work),
        "mean_latency_ms": sum(latencies) / len(latencies),
        "p99_latency_ms": latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)],
        "route_us": 1e6 * route_s / max(1, len(order)),
    }


def run_routing(
    wls: Sequence[W.Workload],
    replicas: int = 4,
    multipliers: Sequence[float | None] = (16, None),
    policies: Sequence[str] = ("cache-aware", "round-robin", "random", "least-loaded"),
    orders: Sequence[str] = ("conversation", "interleaved"),
    load: float = 0.8,
    max_imbalance: int | None = 2,
    min_match: float = 0.0,
) -> list[RoutingRow]:
    """Every (workload, order, capacity, policy). Capacities are per
    replica, as multiples of the mean prompt (``None``: unbounded)."""
    rows = []
    for wl in wls:
        mean = wl.system_tokens + sum(sum(map(wl.token_counter, c)) for c in wl.contexts) / max(1, len(wl))
        for order_name in orders:
            order = list(range(len(wl))) if order_name == "conversation" else interleave(wl)
            for m in multipliers:
                cap = None if m is None else m * mean
                label = "inf" if m is None else f"{m:g}x"
                for policy in policies:
                    fig = replay_routed(
                        wl,
                        order,
                        replicas,
                        policy,
                        cap,
                        load,
                        max_imbalance=max_imbalance,
                        min_match=min_match,
                    )
                    rows.append(RoutingRow(wl.name, order_name, label, policy, replicas, **fig))
    return rows


def table(rows: Sequence[RoutingRow]) -> str:
    head = (
        f"{'workload':<14} {'order':<12} {'cache':>5} {'policy':<13} {'hit':>6} {'req max/mean':>12} "
        f"{'work max/mean':>13} {'lat mean':>9} {'lat p99':>9} {'route':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.workload:<14} {r.order:<12} {r.capacity:>5} {r.policy:<13} {r.hit_ratio:>6.3f} "
            f"{r.balance:>12.2f} {r.work_balance:>13.2f} {r.mean_latency_ms:>7.1f}ms "
            f"{r.p99_latency_ms:>7.1f}ms {r.route_us:>6.0f}µs"
        )
    return "\n".join(lines)


def workloads(data: str | None = None, quick: bool = False, no_locomo: bool = False) -> list[W.Workload]:
    """LoCoMo memories and chunks when found, else a synthetic RAG stream."""
    path = None if no_locomo else (data or W.default_locomo_path())
    if path is None:
        log.info("LoCoMo data not found (pass --data or set CONTEXTPILOT_LOCOMO): synthetic only")
        return [W.synthetic_rag(300 if quick else 2000, n_topics=40)]
    wls = [W.locomo_mem(path), W.locomo_chunks(path)]
    return [_per_group(wl, 30) for wl in wls] if quick else wls


def _per_group(wl: W.Workload, n: int) -> W.Workload:
    """The first ``n`` requests of each group, in the original order."""
    seen: dict[int, int] = {}
    keep = []
    for i, g in enumerate(wl.groups):
        seen[g] = seen.get(g, 0) + 1
        if seen[g] <= n:
            keep.append(i)
    return W.Workload(
        name=f"{wl.name}[{n}/conv]",
        contexts=[wl.contexts[i] for i in keep],
        queries=[wl.queries[i] for i in keep],
        token_counter=wl.token_counter,
        system_tokens=wl.system_tokens,
        groups=[wl.groups[i] for i in keep],
        description=wl.description,
    )


def _capacities(spec: str) -> list[float | None]:
    out: list[float | None] = []
    for part in spec.split(","):
        p = part.strip().lower().rstrip("x")
        out.append(None if p in ("inf", "none") else float(p))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m contextpilot.bench.routing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--capacities", type=_capacities, default=[16, None], help="per replica, e.g. 16,inf")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--orders", default="conversation,interleaved")
    ap.add_argument("--load", type=float, default=0.8, help="arrival rate / no-cache service rate")
    ap.add_argument("--max-imbalance", type=int, default=2)
    ap.add_argument("--min-match", type=float, default=0.0, help="as the server's --route-min-match")
    ap.add_argument("--data", help="path to locomo10.json")
    ap.add_argument("--no-locomo", action="store_true")
    ap.add_argument("--quick", action="store_true", help="30 questions per conversation")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    rows = run_routing(
        workloads(args.data, args.quick, args.no_locomo),
        args.replicas,
        args.capacities,
        [p.strip() for p in args.policies.split(",")],
        [o.strip() for o in args.orders.split(",")],
        args.load,
        args.max_imbalance,
        args.min_match,
    )
    print(table(rows))
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([r.to_dict() for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
