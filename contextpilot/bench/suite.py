"""The benchmark's default run: simulated prefix-cache hit ratio of each
planning method on each workload (batch and online replay) at the asked
capacities, with bounds and the exact-oracle gap; optionally the scale
series and a real-engine replay; then results.json and the plots. The
single-purpose modes are in :mod:`contextpilot.bench.modes`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from contextpilot.bench import report
from contextpilot.bench import workloads as W
from contextpilot.bench.methods import External, ours_batch
from contextpilot.bench.options import synthetic_params
from contextpilot.bench.progress import progress
from contextpilot.bench.runner import CACHES, capacities, oracle_gap, run_batch, run_online, workload_bounds

__all__ = ["run_simulated", "run_suite"]

log = logging.getLogger("contextpilot.bench")


def _workloads(args: argparse.Namespace) -> list[W.Workload]:
    params = synthetic_params(args.synthetic)
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


def run_suite(args: argparse.Namespace, externals: list[External], out_dir: Path, results: dict) -> int:
    """The default run: the simulated tables, then the scale series
    (``--scale``) and the engine replay (``--engine``/``--engine-url``) when
    asked; writes results.json and the plots."""
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
