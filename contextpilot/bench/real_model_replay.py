"""Replaying one workload on a real model: one :class:`Player` per ordering
(its own fresh llama-server, plus our server and the llama.cpp proxy for the
product path), interleaved request by request by :func:`run_orderings`.
Each served request becomes an :class:`Outcome` (reused tokens from
``timings.cache_n``, prompt time, TTFT, and when scoring, the short answer
and the gold answer's log-likelihood)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contextpilot.bench import quality as Q
from contextpilot.bench.engine import LlamaServer
from contextpilot.bench.llama_client import score_gold, serve
from contextpilot.bench.product_path import ProductPath
from contextpilot.bench.real_model_cases import Case, Condition, prompt_text
from contextpilot.bench.real_models import ModelSpec

__all__ = ["ANSWER_TOKENS", "Engine", "Outcome", "Plan", "Player", "Replay", "interleave", "run_orderings"]

log = logging.getLogger("contextpilot.bench")

ANSWER_TOKENS = 12


# ---------------------------------------------------------------- records


@dataclass
class Outcome:
    """One request as served, in the replay's order."""

    index: int
    prompt_tokens: int
    cache_n: int
    prompt_ms: float
    ttft_ms: float
    answer: str | None = None
    gold_logprob: float | None = None
    gold_tokens: int | None = None


@dataclass
class Replay:
    """One ordering, one run, one fresh server."""

    condition: str
    run: int
    outcomes: list[Outcome] = field(default_factory=list)
    wall_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        toks = sum(o.prompt_tokens for o in self.outcomes)
        reused = sum(o.cache_n for o in self.outcomes)
        ttft = sorted(o.ttft_ms for o in self.outcomes)
        return {
            "condition": self.condition,
            "run": self.run,
            "requests": len(self.outcomes),
            "prompt_tokens": toks,
            "reused_tokens": reused,
            "reuse": reused / toks if toks else 0.0,
            "prompt_s": sum(o.prompt_ms for o in self.outcomes) / 1000,
            "ttft_p50_ms": _pct(ttft, 0.50),
            "ttft_p95_ms": _pct(ttft, 0.95),
            "wall_s": self.wall_seconds,
            **self.extra,
        }


def _pct(sorted_vals: Sequence[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    return float(sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))])


Plan = tuple[list[int], list[list[str]]]


class Player:
    """One ordering's replay on its own fresh llama-server (and, for the
    product path, its own contextpilot server and llama.cpp proxy), served
    one request per :meth:`step` so several players can be interleaved.

    Invariant: ``outcomes`` holds the first ``steps`` requests of the
    ordering's schedule, in that order. Use as a context manager."""

    def __init__(
        self, engine: Engine, case: Case, cond: Condition, plan: Plan | None, run: int, scoring: bool
    ) -> None:
        self.case, self.cond, self.plan, self.scoring = case, cond, plan, scoring
        self.replay = Replay(cond.name, run)
        self._stack = contextlib.ExitStack()
        self._engine = engine
        self._path: ProductPath | None = None
        self._busy = 0.0

    def __enter__(self) -> Player:
        eng = self._engine
        try:
            self.server = self._stack.enter_context(
                LlamaServer(eng.binary, eng.model, ctx=eng.spec.context, extra=eng.spec.flags)
            )
            if self.plan is None:  # the product path decides the block order online
                self._path = self._stack.enter_context(ProductPath(self.server.url, eng.workdir))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __len__(self) -> int:
        return len(self.case.contexts)

    def step(self) -> None:
        """Serve the ordering's next request."""
        case, cond, rep = self.case, self.cond, self.replay
        n_predict = ANSWER_TOKENS if self.scoring else 1
        t0 = time.perf_counter()
        pos = len(rep.outcomes)
        if self._path is not None:
            i = pos
            blocks, rid = self._path.reorder(case.contexts[i])
            prompt = prompt_text(blocks, case.queries[i], case.contexts[i], cond)
            r = serve(self._path.url, prompt, n_predict, rid=rid, openai=True)
        else:
            assert self.plan is not None
            i, blocks = self.plan[0][pos], self.plan[1][pos]
            prompt = prompt_text(blocks, case.queries[i], case.contexts[i], cond)
            r = serve(self.server.url, prompt, n_predict)
        rep.outcomes.append(_outcome(self.server.url, i, prompt, r, case, self.scoring))
        self._busy += time.perf_counter() - t0

    def __exit__(self, *exc: object) -> None:
        try:
            if self._path is not None and exc[0] is None:
                time.sleep(1.0)  # let the proxy's notifier deliver its last evictions
                st = self._path.stats()
                index = st["server"].get("index_stats") or {}
                self.replay.extra = {
                    "index_live_requests": index.get("live_requests"),
                    "index_evicted_by_engine": index.get("evicted_by_engine"),
                    "evictions_reported_by_proxy": st["proxy"]["evictions"]["reported"],
                }
        finally:
            self.replay.wall_seconds = self._busy
            self._stack.close()


def interleave(players: Sequence[Player], bar: Any) -> None:
    """Serve all players request by request: position ``k`` of every
    ordering before position ``k + 1`` of any, the first player rotating, so
    load from elsewhere on the machine falls on all orderings alike."""
    n = max((len(p) for p in players), default=0)
    for k in range(n):
        for j in range(len(players)):
            p = players[(k + j) % len(players)]
            if k < len(p):
                p.step()
                bar.update()


def _outcome(url: str, i: int, prompt: str, r: dict, case: Case, scoring: bool) -> Outcome:
    out = Outcome(i, r["prompt_n"] + r["cache_n"], r["cache_n"], r["prompt_ms"], r["ttft_ms"])
    if scoring and case.answers[i] is not None:
        out.answer = Q.short_answer(r["text"])
        out.gold_logprob, out.gold_tokens = score_gold(url, prompt, case.answers[i] or "")
    return out


@dataclass
class Engine:
    """How to start a fresh server for one replay."""

    spec: ModelSpec
    binary: Path
    model: Path
    workdir: Path

    def replay(
        self, case: Case, cond: Condition, plan: Plan | None, run: int, score: bool, bar: Any
    ) -> Replay:
        """One ordering alone (see :func:`run_orderings` for several)."""
        return run_orderings(self, case, [(cond, plan)], run, score, bar)[0]


def run_orderings(
    engine: Engine,
    case: Case,
    orderings: Sequence[tuple[Condition, Plan | None]],
    run: int,
    score: bool,
    bar: Any,
) -> list[Replay]:
    """Replay several orderings at once, each on its own fresh server,
    interleaved request by request (:func:`interleave`)."""
    with contextlib.ExitStack() as stack:
        players = [
            stack.enter_context(Player(engine, case, cond, plan, run, score)) for cond, plan in orderings
        ]
        interleave(players, bar)
    for p in players:
        s = p.replay.summary()
        log.info(
            "%s run %d %-30s reuse %5.1f%%  prompt %7.1f s",
            case.name,
            run,
            p.cond.name,
            100 * s["reuse"],
            s["prompt_s"],
        )
    return [p.replay for p in players]
