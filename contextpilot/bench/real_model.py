"""Real-model benchmark: prompt time, reuse and answer quality per ordering.

``python -m contextpilot.bench --engine llama-server --engine-model gemma3-270m``
fetches the model (:mod:`contextpilot.bench.real_models`), finds or builds
llama-server, and for each workload replays the same requests in several
orderings, each on a freshly started server (``-np 1 --cache-ram 0``, plus
``--swa-full`` for sliding-window models, checked against the server's log):

* ``retrieval``: requests as they arrive, blocks by relevance (the baseline);
* ``frequency``: blocks by batch popularity, requests sorted;
* externals (``--external NAME=COMMAND``, e.g. the reference), batch and
  online (``NAME-online``: one request at a time on its live index);
* ``contextpilot``: our batch plan;
* ``contextpilot-online``: the product path, one request at a time:
  ``POST /reorder`` on a real contextpilot server, then the completion
  through that server's OpenAI proxy, the llama.cpp slot-tracking proxy and
  llama-server, so the engine's evictions flow back into the live index.

Per ordering and run: prompt tokens, reused tokens (``timings.cache_n``),
total prompt time (``timings.prompt_ms``), TTFT p50/p95 (server side:
prompt time plus the first decode step). Within a run, all orderings are
replayed at once, interleaved request by request (each on its own server), so
load from elsewhere on a shared machine falls on every ordering alike; the
rotation is reversed every other run.

Answer quality (first run, LoCoMo): greedy short answers (token F1, exact
match) and the teacher-forced log-likelihood of the gold answer, scored on
the same prompt right after it was served (the prompt is in the cache, so
scoring costs a few tokens): a GBNF grammar forces the gold text and the
server reports each forced token's probability under the raw model.
Differences to retrieval order are paired per question with bootstrap
intervals; ablations separate the order itself, the content labels and the
relevance line, and a no-context prompt shows how much context helps.
LoCoMo's adversarial questions (category 5) have no gold answer and are
left out of quality, and counted.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from contextpilot.bench import quality as Q
from contextpilot.bench.engine import LlamaServer, find_llama_server
from contextpilot.bench.llama_client import count_tokens, swa_status
from contextpilot.bench.methods import External, frequency_order, ours_batch, retrieval_order
from contextpilot.bench.progress import progress
from contextpilot.bench.real_model_cases import Case, Condition, build_cases, parse_sizes
from contextpilot.bench.real_model_replay import Engine, Outcome, Plan, Replay, run_orderings
from contextpilot.bench.real_model_report import tables
from contextpilot.bench.real_models import ModelSpec, fetch_model, model_spec

__all__ = ["ordering_names", "run_quality", "run_real_model", "run_speed"]

log = logging.getLogger("contextpilot.bench")

# ---------------------------------------------------------------- replays


def _plans(case: Case, count: Callable[[str], int], externals: Sequence[External]) -> dict[str, Plan]:
    plans: dict[str, Plan] = {
        "retrieval": retrieval_order(case.contexts),
        "frequency": frequency_order(case.contexts, count),
        "contextpilot": ours_batch(case.contexts, count),
    }
    for ext in externals:
        plans[ext.name] = ext(case.contexts, count)
        plans[f"{ext.name}-online"] = ext(case.contexts, count, mode="online")
    return plans


def _quality(case: Case, replays: dict[str, Replay], base: str = "retrieval") -> dict:
    """Per condition: mean F1 / EM / gold log-likelihood, and paired
    differences to ``base`` with bootstrap intervals."""
    scored = {name: {o.index: o for o in r.outcomes if o.answer is not None} for name, r in replays.items()}
    scored = {name: s for name, s in scored.items() if s}
    if base not in scored or not scored[base]:
        return {}
    ids = sorted(set.intersection(*(set(s) for s in scored.values())))
    out: dict = {
        "questions": len(ids),
        "adversarial_or_unanswerable_left_out": sum(1 for a in case.answers if a is None),
        "conditions": {},
    }
    metrics: dict[str, Callable[[Outcome, int], float]] = {
        "f1": lambda o, i: Q.token_f1(o.answer or "", case.answers[i] or ""),
        "exact_match": lambda o, i: Q.exact_match(o.answer or "", case.answers[i] or ""),
        "gold_logprob": lambda o, i: float(o.gold_logprob or 0.0),
    }
    values = {
        name: {m: [fn(s[i], i) for i in ids] for m, fn in metrics.items()} for name, s in scored.items()
    }
    for name, v in values.items():
        entry: dict = {m: statistics.fmean(xs) if xs else float("nan") for m, xs in v.items()}
        if name != base and ids:
            entry["vs_" + base] = {m: Q.paired_bootstrap(values[base][m], v[m]).to_dict() for m in metrics}
        out["conditions"][name] = entry
    return out


def _summarise(replays: list[Replay], base: str = "retrieval") -> dict:
    by: dict[str, list[dict]] = {}
    for r in replays:
        by.setdefault(r.condition, []).append(r.summary())
    base_runs = {s["run"]: s for s in by.get(base, [])}
    out = {}
    for name, runs in by.items():
        ratios = [
            base_runs[s["run"]]["prompt_s"] / s["prompt_s"]
            for s in runs
            if s["run"] in base_runs and s["prompt_s"] > 0
        ]
        out[name] = {
            "runs": len(runs),
            "reuse": [s["reuse"] for s in runs],
            "prompt_s": [s["prompt_s"] for s in runs],
            "ttft_p50_ms": [s["ttft_p50_ms"] for s in runs],
            "ttft_p95_ms": [s["ttft_p95_ms"] for s in runs],
            "speedup_vs_retrieval": ratios,
        }
    return out


def _prepare(case: Case, spec: ModelSpec, binary: Path, model: Path) -> tuple[dict, Callable[[str], int]]:
    """The server's SWA set-up (refusing a server that cannot reuse partial
    prefixes) and exact token counts of every block for the planners."""
    with LlamaServer(binary, model, ctx=spec.context, extra=spec.flags) as srv:
        swa = swa_status(srv)
        counts: dict[str, int] = {}
        for ctx in case.contexts:
            for b in ctx:
                if b not in counts:
                    counts[b] = count_tokens(srv.url, "\n\n" + b)
    if swa["sliding_window"] and not swa["swa_full"]:
        raise RuntimeError(
            f"{spec.name} uses sliding-window attention (window {swa['sliding_window']}) but llama-server "
            "runs without a full-size SWA cache: partial prefixes would never be reused (--swa-full)"
        )
    if swa["sliding_window"]:
        log.warning(
            "%s uses sliding-window attention (window %d): llama-server runs with --swa-full, without "
            "which llama.cpp reuses no partial prefix and reordering gains nothing",
            spec.name,
            swa["sliding_window"],
        )
    return swa, counts.__getitem__


def ordering_names(externals: Sequence[External], only: str | None = None) -> list[str]:
    """The speed replay's orderings, retrieval first (the baseline every
    ratio is taken against, so it is always kept); ``only`` (comma-separated)
    keeps a subset and names an unknown one in its error."""
    names = ["retrieval", "frequency", *[e.name for e in externals], "contextpilot"]
    names += [f"{e.name}-online" for e in externals] + ["contextpilot-online"]
    if not only:
        return names
    wanted = {n.strip() for n in only.split(",") if n.strip()}
    unknown = sorted(wanted - set(names))
    if unknown:
        raise ValueError(f"--engine-orderings: unknown {', '.join(unknown)}; known: {', '.join(names)}")
    return [n for n in names if n == "retrieval" or n in wanted]


def run_speed(
    case: Case, engine: Engine, externals: Sequence[External], runs: int, only: str | None = None
) -> dict:
    """Every ordering (or those in ``only``) ``runs`` times, each run all
    orderings interleaved request by request on fresh servers of their own,
    the rotation reversed every other run."""
    names = ordering_names(externals, only)
    swa, count = _prepare(case, engine.spec, engine.binary, engine.model)
    t0 = time.perf_counter()
    plans = _plans(case, count, externals)
    log.info("%s: planned %d orderings in %.1f s", case.name, len(plans), time.perf_counter() - t0)
    conds = [Condition(n, n) for n in names]
    replays: list[Replay] = []
    with progress(
        len(case.contexts) * len(conds) * runs, f"{case.name} on {engine.spec.name}", after=0
    ) as bar:
        for run in range(runs):
            order = conds if run % 2 == 0 else list(reversed(conds))
            pairs = [(c, None if c.name == "contextpilot-online" else plans[c.order]) for c in order]
            replays += run_orderings(engine, case, pairs, run, False, bar)
    return {
        "workload": case.name,
        "description": case.description,
        "requests": len(case.contexts),
        "swa": swa,
        "runs": [r.summary() for r in replays],
        "summary": _summarise(replays),
        "per_request": {r.condition: [asdict(o) for o in r.outcomes] for r in replays if r.run == 0},
    }


#: the quality pass: the order itself, then our content labels, then the
#: relevance line, each against retrieval order; no context for scale
QUALITY_CONDITIONS = (
    Condition("retrieval", "retrieval"),
    Condition("contextpilot", "contextpilot"),
    Condition("contextpilot+labels", "contextpilot", labels=True),
    Condition("contextpilot+labels+relevance", "contextpilot", labels=True, relevance=True),
    Condition("retrieval+labels+relevance", "retrieval", labels=True, relevance=True),
    Condition("no-context", "retrieval", context=False),
)


def run_quality(case: Case, engine: Engine, conditions: Sequence[Condition] = QUALITY_CONDITIONS) -> dict:
    """One scored replay per condition: greedy short answers and the gold
    answer's log-likelihood, paired per question against retrieval order."""
    _, count = _prepare(case, engine.spec, engine.binary, engine.model)
    plans = {"retrieval": retrieval_order(case.contexts), "contextpilot": ours_batch(case.contexts, count)}
    replays = {}
    with progress(len(case.contexts) * len(conditions), f"{case.name} quality", after=0) as bar:
        pairs = [(cond, plans[cond.order]) for cond in conditions]
        for rep in run_orderings(engine, case, pairs, 0, True, bar):
            replays[rep.condition] = rep
    return {
        "workload": case.name,
        "description": case.description,
        "requests": len(case.contexts),
        "runs": [r.summary() for r in replays.values()],
        "quality": _quality(case, replays),
        "per_request": {name: [asdict(o) for o in r.outcomes] for name, r in replays.items()},
    }


def run_real_model(args: argparse.Namespace, externals: Sequence[External], out_dir: Path) -> dict:
    spec = model_spec(args.engine_model)
    only = getattr(args, "engine_orderings", None)
    ordering_names(externals, only)  # a bad name fails before the model is fetched
    binary = find_llama_server(build=args.build)
    if binary is None:
        raise SystemExit(
            "llama-server not found: run scripts/build_llama_server.sh (about 7 minutes), "
            "pass --build, or set LLAMA_SERVER_BIN"
        )
    model = fetch_model(spec.name)
    sizes = parse_sizes(args.engine_workloads, args.quick)
    workdir = out_dir / "real-model-logs"
    workdir.mkdir(parents=True, exist_ok=True)
    engine = Engine(spec, binary, model, workdir)
    result: dict = {
        "model": {"name": spec.name, "description": spec.description, "file": model.name},
        "engine": {
            "binary": str(binary),
            "flags": " ".join(["-np 1 --cache-ram 0 -t 2", *spec.flags]),
            "context": spec.context,
        },
        "ttft": "server side: timings.prompt_ms plus one decode step",
        "workloads": [],
    }
    for case in build_cases(args, sizes):
        res = run_speed(case, engine, externals, args.engine_runs, only)
        result["workloads"].append(res)
        print(tables(res))
    n_quality = args.quality_questions if args.quality_questions is not None else (10 if args.quick else 250)
    if not args.no_quality and n_quality > 0:
        cases = build_cases(args, {"locomo-mem": n_quality})
        if cases:
            res = run_quality(cases[0], engine)
            result["quality"] = res
            print(tables(res))
    return result
