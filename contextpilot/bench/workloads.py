"""Benchmark workloads: LoCoMo memory / chunk retrieval and synthetic RAG.

A :class:`Workload` is a batch of requests; request ``i`` sends
``system prompt + contexts[i] + queries[i]``. Requests are listed in their
natural (arrival) order, which is also the online replay order.

LoCoMo (Maharana et al., ACL 2024, CC BY-NC 4.0) is read from a path the
caller gives; nothing here requires it to exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contextpilot.bench.bm25 import BM25
from contextpilot.core.blocks import Block, default_token_counter

__all__ = [
    "Workload",
    "default_locomo_path",
    "locomo_chunks",
    "locomo_mem",
    "observation_facts",
    "synthetic_rag",
]

SYSTEM_TOKENS = 120


@dataclass
class Workload:
    name: str
    contexts: list[list[Block]]
    queries: list[str]
    #: token length of a block (texts: the default estimator)
    token_counter: Callable[[Block], int] = default_token_counter
    system_tokens: int = SYSTEM_TOKENS
    #: group id per request (a conversation or topic), for reports
    groups: list[int] = field(default_factory=list)
    description: str = ""
    #: per request, where the data has it: the gold ``answer`` (None for
    #: LoCoMo's adversarial category 5, which has none) and ``category``
    answers: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.contexts)

    def subset(self, n: int) -> Workload:
        return Workload(
            name=f"{self.name}[:{n}]",
            contexts=self.contexts[:n],
            queries=self.queries[:n],
            token_counter=self.token_counter,
            system_tokens=self.system_tokens,
            groups=self.groups[:n],
            description=self.description,
            answers=self.answers[:n],
        )


def default_locomo_path() -> Path | None:
    """``$CONTEXTPILOT_LOCOMO`` or ``../shared/data/locomo10.json`` if present."""
    env = os.environ.get("CONTEXTPILOT_LOCOMO")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parents[2]
    candidates += [Path.cwd().parent / "shared/data/locomo10.json", here.parent / "shared/data/locomo10.json"]
    for p in candidates:
        if p.is_file():
            return p
    return None


def _load(path: str | Path | None) -> list[dict]:
    p = Path(path) if path is not None else default_locomo_path()
    if p is None or not p.is_file():
        raise FileNotFoundError(
            "LoCoMo data not found: pass a path or set CONTEXTPILOT_LOCOMO "
            "(expected ../shared/data/locomo10.json)"
        )
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def _sessions(conv: dict) -> list[str]:
    keys = [k for k in conv if k.startswith("session_") and k[8:].isdigit()]
    return sorted(keys, key=lambda k: int(k[8:]))


def _retrieve(
    name: str, data: list[dict], corpus_of: Callable[[dict], list[str]], k: int, desc: str
) -> Workload:
    contexts: list[list[Block]] = []
    queries: list[str] = []
    groups: list[int] = []
    answers: list[dict] = []
    for c, sample in enumerate(data):
        corpus = corpus_of(sample)
        if not corpus:
            continue
        bm25 = BM25(corpus)
        for qa in sample.get("qa", []):
            q = str(qa["question"])
            contexts.append([corpus[i] for i in bm25.top_k(q, k)])
            queries.append(q)
            groups.append(c)
            # category 5 is adversarial: the question has no answer in the conversation
            gold = None if qa.get("category") == 5 else qa.get("answer")
            answers.append({"answer": None if gold is None else str(gold), "category": qa.get("category")})
    return Workload(name, contexts, queries, groups=groups, description=desc, answers=answers)


def observation_facts(sample: dict, sessions: int | None = None) -> list[str]:
    """A LoCoMo conversation's observation facts (both speakers'), in session
    order, each once; ``sessions``: only the first that many sessions."""
    obs = sample.get("observation", {})
    # keys are "session_<n>_observation": numeric order, not string order (10 < 2)
    keys = sorted(obs, key=lambda s: int(s.split("_")[1]))[:sessions]
    out: list[str] = []
    for key in keys:
        for facts in obs[key].values():
            out.extend(str(f[0]) for f in facts)
    return list(dict.fromkeys(out))


def locomo_mem(path: str | Path | None = None, k: int = 20) -> Workload:
    """Each question retrieves its top-k of its conversation's observations."""
    return _retrieve(
        "locomo-mem",
        _load(path),
        observation_facts,
        k,
        f"LoCoMo: per-session observation facts, BM25 top-{k} per question",
    )


def locomo_chunks(path: str | Path | None = None, k: int = 10, turns: int = 8) -> Workload:
    """Each question retrieves its top-k chunks of ``turns`` dialogue turns."""

    def chunks(sample: dict) -> list[str]:
        conv = sample["conversation"]
        lines = [f"{t['speaker']}: {t['text']}" for s in _sessions(conv) for t in conv[s]]
        return list(dict.fromkeys("\n".join(lines[i : i + turns]) for i in range(0, len(lines), turns)))

    return _retrieve(
        "locomo-chunks",
        _load(path),
        chunks,
        k,
        f"LoCoMo: chunks of {turns} dialogue turns, BM25 top-{k} per question",
    )


def synthetic_rag(
    n_requests: int = 2000,
    blocks_per_request: int = 20,
    n_docs: int = 20000,
    n_topics: int = 200,
    topic_size: int = 60,
    zipf: float = 1.1,
    noise: float = 0.15,
    shuffle: float = 0.3,
    block_tokens: tuple[int, int] = (40, 400),
    seed: int = 0,
) -> Workload:
    """Correlated RAG retrieval with topic clusters and popularity skew.

    Topics are drawn with Zipf popularity ``zipf``; each topic owns
    ``topic_size`` documents with a base relevance ranking. A request takes
    its topic's ranking, swaps a fraction ``shuffle`` of adjacent ranks,
    replaces a fraction ``noise`` of its blocks by random documents, and
    keeps the top ``blocks_per_request``. Document lengths are uniform in
    ``block_tokens``. Blocks are int ids.
    """
    if n_requests < 0 or blocks_per_request < 1 or topic_size < 1 or n_docs < 1:
        raise ValueError("synthetic_rag: sizes must be positive")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(block_tokens[0], block_tokens[1] + 1, size=n_docs)
    ranks = np.arange(1, n_topics + 1, dtype=np.float64)
    p = ranks**-zipf
    p /= p.sum()
    topic_docs = rng.integers(0, n_docs, size=(n_topics, topic_size))
    topics = rng.choice(n_topics, size=n_requests, p=p)
    k = min(blocks_per_request, topic_size)
    contexts: list[list[Block]] = []
    for t in topics.tolist():
        ranking = topic_docs[t].copy()
        n_swaps = int(shuffle * topic_size)
        if n_swaps:
            pos = rng.integers(0, topic_size - 1, size=n_swaps)
            for j in pos.tolist():
                ranking[j], ranking[j + 1] = ranking[j + 1], ranking[j]
        row = list(dict.fromkeys(ranking.tolist()))[:k]
        n_noise = rng.binomial(len(row), noise)
        if n_noise:
            slots = rng.choice(len(row), size=n_noise, replace=False)
            for s, d in zip(slots.tolist(), rng.integers(0, n_docs, size=n_noise).tolist()):
                row[s] = d
        contexts.append(list(dict.fromkeys(row)))
    table = lengths.tolist()
    return Workload(
        name="synthetic",
        contexts=contexts,
        queries=[f"q{i}" for i in range(n_requests)],
        token_counter=lambda b: table[b],
        groups=topics.tolist(),
        description=(
            f"synthetic RAG: {n_topics} topics (zipf {zipf}), {topic_size} docs each, "
            f"noise {noise}, shuffle {shuffle}"
        ),
    )
