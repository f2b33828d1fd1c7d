"""``python -m contextpilot.bench`` (or ``contextpilot bench``).

Simulated prefix-cache hit ratio of each planning method on each workload
(batch and online replay) at unbounded / 64x / 16x-the-mean-prompt caches,
with bounds and the exact-oracle gap; optionally the scale series and a
real-engine replay. Prints tables, writes ``results.json`` and PNG plots
to ``--out``. LoCoMo is used when found (``--data``,
``$CONTEXTPILOT_LOCOMO`` or ``../shared/data/locomo10.json``).

Examples::

    python -m contextpilot.bench                       # tables + plots
    python -m contextpilot.bench --quick               # CI smoke run, < 1 min
    python -m contextpilot.bench --scale               # + 1k..1M scale series
    python -m contextpilot.bench --memory              # only: RSS of 1M requests through the live index
    python -m contextpilot.bench --engine llama-server # + real llama-server replay
    python -m contextpilot.bench --engine-url http://gpu-box:8000 --engine-model my-model
    python -m contextpilot.bench --external "ref=/venv/bin/python scripts/reference_planner.py"
    python -m contextpilot.bench --latency             # only online p50/p99 with 100k live requests
    python -m contextpilot.bench --routing-replicas 4  # only the routing comparison (R replicas)
    python -m contextpilot.bench --shards 4,8          # sharding for R replicas only (1M requests, Ray)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from contextpilot.bench import report
from contextpilot.bench import workloads as W
from contextpilot.bench.methods import External, ours_batch
from contextpilot.bench.progress import progress
from contextpilot.bench.runner import CACHES, capacities, oracle_gap, run_batch, run_online, workload_bounds

log = logging.getLogger("contextpilot.bench")

SYNTHETIC_KEYS = {
    "blocks_per_request": int,
    "n_docs": int,
    "n_topics": int,
    "topic_size": int,
    "zipf": float,
    "noise": float,
    "shuffle": float,
    "seed": int,
}


def _capacities(spec: str) -> list[float | None]:
    out: list[float | None] = []
    for part in spec.split(","):
        part = part.strip().lower().rstrip("x")
        if part in ("inf", "∞", "none"):
            out.append(None)
            continue
        try:
            v = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"capacity {part!r}: use 'inf' or a multiple like 16") from None
        if v <= 0:
            raise argparse.ArgumentTypeError("capacity multiples must be > 0")
        out.append(v)
    return out


def _synthetic_params(items: list[str]) -> dict:
    params: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in SYNTHETIC_KEYS:
            raise SystemExit(f"--synthetic {item!r}: use KEY=VALUE with KEY in {sorted(SYNTHETIC_KEYS)}")
        params[key] = SYNTHETIC_KEYS[key](value)
    return params


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m contextpilot.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, offline, < 1 minute (CI)")
    ap.add_argument("--out", default="bench-results", help="folder for results.json and plots")
    ap.add_argument("--data", help="path to locomo10.json")
    ap.add_argument("--no-locomo", action="store_true", help="synthetic workload only")
    ap.add_argument("--requests", type=int, help="synthetic batch size (default 2000; quick 400)")
    ap.add_argument(
        "--synthetic",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=f"synthetic generator parameters: {', '.join(SYNTHETIC_KEYS)}",
    )
    ap.add_argument(
        "--capacities",
        type=_capacities,
        default=None,
        help="cache sizes as multiples of the mean prompt (default inf,64,16; --shards: inf,16)",
    )
    ap.add_argument(
        "--cache",
        choices=("radix", "paged", "both"),
        default="both",
        help="cache model: radix (SGLang-like), paged (vLLM-like 16-token blocks)",
    )
    ap.add_argument(
        "--external",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="another planner speaking the JSON protocol (repeatable)",
    )
    ap.add_argument("--oracle-trials", type=int, default=None, help="small batches for the oracle gap")
    ap.add_argument("--no-online", action="store_true", help="skip online replay")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--scale", action="store_true", help="run the scale series")
    ap.add_argument("--scale-sizes", help="comma-separated request counts (default 1k..1M; quick 1k..10k)")
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="planning processes for the scale series (default: the front object's own choice, one per CPU)",
    )
    ap.add_argument(
        "--scale-workloads",
        default="synthetic,noisy",
        help="scale series batches: synthetic (the bench's), noisy (30%% random blocks from 500k docs)",
    )
    ap.add_argument(
        "--memory",
        action="store_true",
        help="only the memory bound: distinct requests through the live index, peak RSS and time",
    )
    ap.add_argument(
        "--memory-requests", type=int, help="requests for --memory (default 1000000; quick 20000)"
    )
    ap.add_argument(
        "--memory-capacity", type=float, default=2_000_000, help="index capacity in tokens for --memory"
    )
    ap.add_argument(
        "--memory-cap-mib",
        type=float,
        default=256,
        help="stated peak-RSS cap for --memory; exit status 1 when over (default 256 MiB)",
    )
    ap.add_argument(
        "--latency",
        action="store_true",
        help="only online latency: p50/p99 per request with a large live index",
    )
    ap.add_argument(
        "--latency-live",
        type=int,
        help="live requests in the index for --latency (default 100000; quick 5000)",
    )
    ap.add_argument(
        "--shards",
        help="only the sharding benchmark, for these replica counts (e.g. 4,8); merges into results.json",
    )
    ap.add_argument("--shard-requests", type=int, help="batch size for --shards (default 1M; quick 20k)")
    ap.add_argument(
        "--shard-executor",
        choices=("ray", "local"),
        default="ray",
        help="where shards are planned (ray needs the ray extra)",
    )
    ap.add_argument("--shard-dataset", action="store_true", help="also time the Ray Dataset input path")
    ap.add_argument("--engine", choices=("llama-server",), help="replay on a managed llama-server")
    ap.add_argument("--engine-url", help="replay on an OpenAI-compatible engine at this URL")
    ap.add_argument(
        "--engine-model",
        help="with --engine llama-server: a real model to fetch and run (gemma3-270m); "
        "with --engine-url: the model name sent",
    )
    ap.add_argument(
        "--engine-workloads",
        help="real model: NAME[:REQUESTS],... of locomo-mem, locomo-chunks, synthetic "
        "(default locomo-mem:200,locomo-chunks:40,synthetic:40; quick 12/6/6)",
    )
    ap.add_argument(
        "--engine-orderings",
        help="real model: only these orderings in the speed replay, comma-separated (retrieval is "
        "always kept as the baseline), e.g. contextpilot-online,reference-online; default all",
    )
    ap.add_argument("--no-quality", action="store_true", help="real model: skip answer-quality scoring")
    ap.add_argument(
        "--quality-questions",
        type=int,
        help="real model: LoCoMo questions (locomo-mem) in the quality pass (default 250; quick 10)",
    )
    ap.add_argument("--engine-requests", type=int, default=60)
    ap.add_argument("--engine-block-bytes", type=int, default=200, help="cut each block to this many bytes")
    ap.add_argument(
        "--engine-size", default="512x8", help="tiny model size(s) for llama-server, WIDTHxLAYERS[,...]"
    )
    ap.add_argument("--engine-runs", type=int, default=2, help="replays of each order (alternating)")
    ap.add_argument("--build", action="store_true", help="build llama-server if not cached (~7 min)")
    ap.add_argument(
        "--routing-replicas",
        type=int,
        metavar="R",
        help="only compare routing (cache-aware, round-robin, random, least-loaded) over R replicas",
    )
    return ap.parse_args(argv)


def _workloads(args: argparse.Namespace) -> list[W.Workload]:
    params = _synthetic_params(args.synthetic)
    n = args.requests or (400 if args.quick else 2000)
    wls = [W.synthetic_rag(n, **params)]
    if not args.no_locomo:
        path = args.data or W.default_locomo_path()
        if path is None:
            log.info("LoCoMo data not found (pass --data or set CONTEXTPILOT_LOCOMO): synthetic only")
        else:
            for make in (W.locomo_mem, W.locomo_chunks):
                wl = make(path)
                wls.append(wl.subset(300) if args.quick else wl)
    return wls


def run_simulated(args: argparse.Namespace, externals: list[External]) -> list[dict]:
    caches = CACHES if args.cache == "both" else (args.cache,)
    trials = args.oracle_trials if args.oracle_trials is not None else (8 if args.quick else 25)
    out = []
    for wl in _workloads(args):
        caps = capacities(wl, args.capacities or [None, 64, 16])
        labels = [lab for lab, _ in caps]
        methods: list = ["retrieval", "frequency", "contextpilot", *externals]
        steps = len(methods) + (0 if args.no_online else 1 + len(externals))
        rows = []
        with progress(steps, f"{wl.name}") as bar:
            for m in methods:
                rows += run_batch(wl, m, caps, caches)
                bar.update()
            if not args.no_online:
                rows += run_online(wl, caps, caches)
                bar.update()
                for ext in externals:
                    rows += run_online(wl, caps, caches, external=ext)
                    bar.update()
        bounds = workload_bounds(wl)
        gap = oracle_gap(wl, ours_batch, trials=trials)
        print(f"\n{wl.name}: {len(wl)} requests — {wl.description}")
        print(report.table(rows, labels))
        print(
            f"bounds: fixed-order trie as retrieved {bounds['trie_bound_as_given']:.3f}, "
            f"dedup ceiling {bounds['dedup_ceiling']:.3f}; oracle: {gap['ratio']:.1%} of the optimum "
            f"on {gap['trials']} small batches (worst {gap['worst']:.1%})"
        )
        out.append(
            {
                "name": wl.name,
                "requests": len(wl),
                "description": wl.description,
                "capacities": {lab: c for lab, c in caps},
                "bounds": bounds,
                "oracle_gap": gap,
                "rows": [r.to_dict() for r in rows],
            }
        )
    return out


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.shards:
        return run_shards(args)
    out_dir = Path(args.out)
    try:
        externals = [External.parse(s) for s in args.external]
    except ValueError as e:
        raise SystemExit(str(e)) from None
    results: dict = {
        "command": "python -m contextpilot.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": report.machine(),
    }
    if args.memory:
        return _memory(args, out_dir, results)
    if args.engine == "llama-server" and args.engine_model:
        return _real_model(args, externals, out_dir, results)
    if args.latency:
        from contextpilot.bench import latency

        live = args.latency_live if args.latency_live is not None else (5_000 if args.quick else 100_000)
        results["latency"] = latency.run(live)
        print("\nonline latency (one request at a time, recorded in the live index)")
        print(latency.table(results["latency"]))
        report.write_json(out_dir / "latency.json", results)
        print(f"wrote {out_dir / 'latency.json'}")
        return 0
    if args.routing_replicas:
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
    results["workloads"] = run_simulated(args, externals)
    if args.scale:
        from contextpilot.bench.scale import FULL_SIZES, MODES, QUICK_SIZES, series, text_vs_ids

        sizes = (
            [int(float(s)) for s in args.scale_sizes.split(",")]
            if args.scale_sizes
            else (QUICK_SIZES if args.quick else FULL_SIZES)
        )
        names = [w.strip() for w in args.scale_workloads.split(",") if w.strip()]
        with progress(len(sizes) * len(names) * len(MODES), "scale series", after=0) as bar:
            results["scale"] = series(sizes, args.workers, bar, workloads=names)
        print("\nscale series through ContextPilot().reorder (20 blocks per request; planner: plan() alone)")
        print(report.scale_table(results["scale"]))
        if not args.no_locomo and (args.data or W.default_locomo_path()) is not None:
            results["text_vs_ids"] = text_vs_ids(args.data)
            print("\nLoCoMo from text blocks and from int ids (ContextPilot().reorder, best of 5)")
            print(report.text_ids_table(results["text_vs_ids"]))
    if args.engine or args.engine_url:
        from contextpilot.bench.real_engine import run_engine

        results["engine"] = run_engine(args, externals)
    report.write_json(out_dir / "results.json", results)
    written = [out_dir / "results.json"]
    if not args.no_plots:
        for cache in ("radix", "paged"):
            if any(r["cache"] == cache for wl in results["workloads"] for r in wl["rows"]):
                p = report.plot_hits(out_dir / f"hit_ratio_{cache}.png", results["workloads"], cache)
                written += [p] if p else []
        if "scale" in results:
            p = report.plot_scale(out_dir / "scale.png", results["scale"])
            written += [p] if p else []
    print(
        "\nhit ratio = prompt tokens found in the simulated prefix cache / all prompt tokens; "
        "capacity = multiple of the mean prompt"
    )
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _real_model(args: argparse.Namespace, externals: list[External], out_dir: Path, results: dict) -> int:
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


def _memory(args: argparse.Namespace, out_dir: Path, results: dict) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
