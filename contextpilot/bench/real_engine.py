"""The real-engine section of the benchmark: same requests, two (or more)
orders, one real engine, reused tokens and prompt time read from it.

Workload: the first ``--engine-requests`` locomo-chunks requests with each
block cut to ``--engine-block-bytes`` bytes (a synthetic text batch when
LoCoMo is absent). With the byte vocabulary a byte is a token, so the
planner is given exact token lengths.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import urllib.request
from collections.abc import Sequence

from contextpilot.bench import report
from contextpilot.bench import workloads as W
from contextpilot.bench.engine import (
    LlamaServer,
    find_llama_server,
    replay_llama,
    replay_openai,
    tiny_model,
)
from contextpilot.bench.methods import External, ours_batch, retrieval_order
from contextpilot.bench.progress import progress

__all__ = ["engine_requests", "run_engine"]

log = logging.getLogger("contextpilot.bench")

SYSTEM = (
    "You are a careful assistant. Answer the question using only the conversation excerpts "
    "below; say so when they do not contain the answer. Be brief and exact about dates."
)


def _cut(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def engine_requests(args: argparse.Namespace) -> tuple[list[list[str]], list[str], str]:
    """(contexts, queries, description) for the engine replay."""
    n, limit = args.engine_requests, args.engine_block_bytes
    path = None if args.no_locomo else (args.data or W.default_locomo_path())
    if path is not None:
        wl = W.locomo_chunks(path).subset(n)
        desc = f"first {n} locomo-chunks requests, blocks cut to {limit} bytes"
        contexts = [[_cut(b, limit) for b in ctx] for ctx in wl.contexts]
        return contexts, wl.queries, desc
    syn = W.synthetic_rag(n, n_docs=2000, n_topics=20, topic_size=30, blocks_per_request=10, seed=0)
    text = {
        b: _cut(f"document {b}: " + " ".join(f"w{(b * 7 + i) % 997}" for i in range(80)), limit)
        for ctx in syn.contexts
        for b in ctx
    }
    desc = f"{n} synthetic requests of 10 text blocks of {limit} bytes (LoCoMo not found)"
    return [[text[b] for b in ctx] for ctx in syn.contexts], syn.queries, desc


def _orders(contexts, externals: Sequence[External]) -> dict[str, tuple[list[int], list[list[str]]]]:
    def count(block: str) -> int:
        return len(block.encode("utf-8"))  # byte vocabulary: one token per byte

    orders = {
        "retrieval": retrieval_order(contexts, count),
        "contextpilot": ours_batch(contexts, count),
    }
    for ext in externals:
        orders[ext.name] = ext(contexts, count)
    return orders


def _flush(url: str) -> bool:
    """Best effort: empty an external engine's prefix cache between orders."""
    for path in ("/flush_cache", "/reset_prefix_cache"):
        try:
            req = urllib.request.Request(url.rstrip("/") + path, data=b"", method="POST")
            with urllib.request.urlopen(req, timeout=30):
                return True
        except OSError:
            continue
    return False


def run_engine(args: argparse.Namespace, externals: Sequence[External]) -> dict:
    contexts, queries, desc = engine_requests(args)
    orders = _orders(contexts, externals)
    prompts = {
        name: [(blocks, queries[i]) for i, blocks in zip(order, ctxs)]
        for name, (order, ctxs) in orders.items()
    }
    runs: list[dict] = []
    out: dict = {"workload": desc, "runs": runs}
    total = len(orders) * args.engine_runs * len(prompts["retrieval"])
    if args.engine_url:
        out["engine"] = {"url": args.engine_url, "model": args.engine_model}
        with progress(total, "engine replay") as bar:
            for run in range(args.engine_runs):
                for name, ps in prompts.items():
                    flushed = _flush(args.engine_url)
                    rep = replay_openai(args.engine_url, ps, SYSTEM, name, args.engine_model, progress=bar)
                    runs.append({**rep.summary(), "run": run, "cache_flushed": flushed})
    else:
        binary = find_llama_server(build=args.build)
        if binary is None:
            raise SystemExit(
                "llama-server not found: run scripts/build_llama_server.sh (about 7 minutes), "
                "pass --build, or set LLAMA_SERVER_BIN"
            )
        out["engine"] = {"binary": str(binary), "flags": "-np 1 --cache-ram 0 -t 2"}
        sizes = [s.strip() for s in args.engine_size.split(",") if s.strip()]
        with progress(total * len(sizes), "engine replay", after=0) as bar:
            for size in sizes:
                width, layers = (int(x) for x in size.lower().split("x"))
                with tiny_model(width, layers) as model:
                    for run in range(args.engine_runs):
                        names = list(prompts) if run % 2 == 0 else list(reversed(prompts))
                        for name in names:
                            with LlamaServer(binary, model) as srv:
                                rep = replay_llama(srv.url, prompts[name], SYSTEM, name, progress=bar)
                            runs.append({**rep.summary(), "run": run, "model": size})
    out["summary"] = _summarise(runs)
    print(f"\nreal engine: {desc}")
    print(report.engine_table(runs))
    for key, s in out["summary"].items():
        print(
            f"{key}: prompt time {s['retrieval_s']:.1f}s in retrieval order vs "
            f"{s['contextpilot_s']:.1f}s in ours: {s['speedup']:.2f}x lower "
            f"(reused {s['retrieval_reuse']:.0%} vs {s['contextpilot_reuse']:.0%})"
        )
    log.debug(json.dumps(out["summary"]))
    return out


def _summarise(runs: list[dict]) -> dict:
    by_model: dict[str, dict[str, list[dict]]] = {}
    for r in runs:
        by_model.setdefault(r.get("model", "engine"), {}).setdefault(r["order"], []).append(r)
    out = {}
    for model, orders in by_model.items():
        if "retrieval" not in orders or "contextpilot" not in orders:
            continue
        base = statistics.mean(r["prompt_ms"] for r in orders["retrieval"]) / 1000
        ours = statistics.mean(r["prompt_ms"] for r in orders["contextpilot"]) / 1000
        out[model] = {
            "retrieval_s": base,
            "contextpilot_s": ours,
            "speedup": base / ours if ours else float("nan"),
            "retrieval_reuse": statistics.mean(r["reuse"] for r in orders["retrieval"]),
            "contextpilot_reuse": statistics.mean(r["reuse"] for r in orders["contextpilot"]),
            "runs": len(orders["retrieval"]),
        }
    return out
