"""The benchmark's single-purpose modes (``--shards``, ``--memory``,
``--latency``, ``--routing-replicas``, the real-model replay): each runs
alone, prints its table and writes its JSON file; the return value is the
exit status. The default run is :mod:`contextpilot.bench.suite`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from contextpilot.bench import report
from contextpilot.bench.methods import External
from contextpilot.bench.progress import progress

__all__ = ["run_latency", "run_memory", "run_real_model_mode", "run_routing", "run_shards"]

log = logging.getLogger("contextpilot.bench")


def run_shards(args: argparse.Namespace) -> int:
    """``--shards``: the sharding benchmark alone, merged into results.json."""
    import json

    from contextpilot.bench import shards

    try:
        counts = [int(x) for x in args.shards.split(",")]
    except ValueError:
        raise SystemExit(f"--shards {args.shards!r}: use comma-separated replica counts, e.g. 4,8") from None
    if not counts or min(counts) < 1:
        raise SystemExit("--shards: replica counts must be >= 1")
    n = args.shard_requests or (shards.QUICK_REQUESTS if args.quick else shards.FULL_REQUESTS)
    if n < 1:
        raise SystemExit("--shard-requests must be >= 1")
    out = Path(args.out) / "results.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    with progress(len(counts) + 1, f"shards ({n:,} requests)", after=0) as bar:
        caps = args.capacities or [None, 16]
        res = shards.run(counts, n, caps, args.shard_executor, dataset=args.shard_dataset, progress=bar)
    res["command"] = "python -m contextpilot.bench --shards " + args.shards
    results["shards"] = res
    results.setdefault("machine", report.machine())
    report.write_json(out, results)
    print(f"\nsharded planning: {n:,} requests x 20 blocks, {args.shard_executor} executor")
    print(shards.table(res))
    print(f"wrote {out}")
    return 0


def run_latency(args: argparse.Namespace, out_dir: Path, results: dict) -> int:
    """``--latency``: online p50/p99 per request with a large live index."""
    from contextpilot.bench import latency

    live = args.latency_live if args.latency_live is not None else (5_000 if args.quick else 100_000)
    results["latency"] = latency.run(live)
    print("\nonline latency (one request at a time, recorded in the live index)")
    print(latency.table(results["latency"]))
    report.write_json(out_dir / "latency.json", results)
    print(f"wrote {out_dir / 'latency.json'}")
    return 0


def run_routing(args: argparse.Namespace, out_dir: Path, results: dict) -> int:
    """``--routing-replicas R``: the routing policies compared over R replicas."""
    from contextpilot.bench import routing

    if args.routing_replicas < 2:
        raise SystemExit("--routing-replicas needs at least 2 replicas")
    rows = routing.run_routing(
        routing.workloads(args.data, args.quick, args.no_locomo), args.routing_replicas
    )
    print(routing.table(rows))
    results["routing"] = [r.to_dict() for r in rows]
    report.write_json(out_dir / "results.json", results)
    print(f"wrote {out_dir / 'results.json'}")
    return 0


def run_real_model_mode(
    args: argparse.Namespace, externals: list[External], out_dir: Path, results: dict
) -> int:
    """``--engine llama-server --engine-model``: the real-model replay."""
    from contextpilot.bench import real_model, real_model_report

    try:
        results["real_model"] = real_model.run_real_model(args, externals, out_dir)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    report.write_json(out_dir / "real_model.json", results)
    written = [out_dir / "real_model.json"]
    if not args.no_plots:
        p = real_model_report.plot(out_dir / "real_model.png", results["real_model"])
        written += [p] if p else []
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def run_memory(args: argparse.Namespace, out_dir: Path, results: dict) -> int:
    """``--memory``: distinct requests through the live index, peak RSS
    against the stated cap (exit status 1 when over)."""
    from contextpilot.bench.memory import measure, table

    n = args.memory_requests or (20_000 if args.quick else 1_000_000)
    log.info("memory bound: %d requests through the live index (capacity %g tokens)", n, args.memory_capacity)
    results["memory"] = measure(n, args.memory_capacity)
    print("\nmemory bound (fresh process; 20 blocks per request; dedup and evictions mixed in)")
    print(table(results["memory"]))
    peak = results["memory"]["peak_rss_mib"]
    results["memory"]["cap_mib"] = args.memory_cap_mib
    within = peak <= args.memory_cap_mib
    verdict = "within" if within else "OVER"
    print(f"peak RSS {peak:.0f} MiB {verdict} the stated cap of {args.memory_cap_mib:.0f} MiB")
    report.write_json(out_dir / "memory.json", results)
    print(f"wrote {out_dir / 'memory.json'}")
    return 0 if within else 1
