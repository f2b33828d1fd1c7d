"""The command line of ``python -m contextpilot.bench``: every option, and
the checks of the ones with a syntax (capacities, synthetic parameters).
Which mode runs is decided in :mod:`contextpilot.bench.__main__`."""

from __future__ import annotations

import argparse

__all__ = ["DESCRIPTION", "SYNTHETIC_KEYS", "parse_args", "parse_capacities", "synthetic_params"]

#: the ``--help`` text above the options
DESCRIPTION = """\
``python -m contextpilot.bench`` (or ``contextpilot bench``).

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


def parse_capacities(spec: str) -> list[float | None]:
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


def synthetic_params(items: list[str]) -> dict:
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
        description=DESCRIPTION,
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
        type=parse_capacities,
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
