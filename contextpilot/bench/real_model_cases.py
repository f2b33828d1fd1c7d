"""Prompts and workloads of the real-model benchmark.

A :class:`Case` is one workload prepared for a real model (text blocks,
questions, LoCoMo gold answers); a :class:`Condition` says how one ordering's
prompts are written. :func:`prompt_text` puts the documents first, so that
prompts share them as a token prefix, and never uses positions as labels.
"""

from __future__ import annotations

import argparse
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from contextpilot.bench import workloads as W
from contextpilot.core.prompt import relevance_line, render_documents

__all__ = [
    "DEFAULT",
    "INSTRUCTION",
    "QUICK",
    "Case",
    "Condition",
    "build_cases",
    "parse_sizes",
    "prompt_text",
]

log = logging.getLogger("contextpilot.bench")

INSTRUCTION = (
    "Below are excerpts from the memory of a long conversation. Read them, then answer the "
    "question with a short phrase."
)
QUICK = {"locomo-mem": 12, "locomo-chunks": 6, "synthetic": 6}
DEFAULT = {"locomo-mem": 200, "locomo-chunks": 40, "synthetic": 40}


# ---------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Condition:
    """How one ordering's prompts are written."""

    name: str
    order: str
    labels: bool = False
    relevance: bool = False
    context: bool = True


def prompt_text(blocks: Sequence[str], query: str, original: Sequence[str], cond: Condition) -> str:
    """Instruction, documents in prompt order, optional relevance line,
    question. The documents come first so prompts share them as a prefix;
    labels are content hashes (the same in every prompt), never positions."""
    parts = [INSTRUCTION]
    if cond.context and blocks:
        parts.append(render_documents(blocks) if cond.labels else "\n\n".join(blocks))
        if cond.relevance:
            parts.append(relevance_line(original))
    parts.append(f"Question: {query}\nShort answer:")
    return "\n\n".join(parts)


# ---------------------------------------------------------------- workloads


@dataclass
class Case:
    """A workload prepared for the real model."""

    name: str
    contexts: list[list[str]]
    queries: list[str]
    answers: list[str | None]
    description: str


def build_cases(args: argparse.Namespace, sizes: dict[str, int]) -> list[Case]:
    path = None if args.no_locomo else (args.data or W.default_locomo_path())
    cases = []
    for name, n in sizes.items():
        if name in ("locomo-mem", "locomo-chunks"):
            if path is None:
                log.warning("LoCoMo data not found: %s skipped", name)
                continue
            make = W.locomo_mem if name == "locomo-mem" else W.locomo_chunks
            wl = make(path).subset(n)
            answers = [a.get("answer") for a in wl.answers] or [None] * len(wl)
            cases.append(
                Case(name, [list(map(str, c)) for c in wl.contexts], wl.queries, answers, wl.description)
            )
        elif name == "synthetic":
            syn = W.synthetic_rag(n, blocks_per_request=10, n_docs=600, n_topics=12, topic_size=24, seed=0)
            rng = random.Random(0)
            text = {}
            for ctx in syn.contexts:
                for b in ctx:
                    if b not in text:
                        words = [f"w{rng.randrange(5000)}" for _ in range(rng.randrange(30, 120))]
                        text[b] = f"Document {b}: " + " ".join(words) + "."
            cases.append(
                Case(
                    name,
                    [[text[b] for b in ctx] for ctx in syn.contexts],
                    [f"What does document {ctx[0]} say?" for ctx in syn.contexts],
                    [None] * len(syn.contexts),
                    f"{n} synthetic requests of 10 text blocks (30-120 pseudo-words), topic-clustered",
                )
            )
        else:
            raise ValueError(f"unknown real-model workload {name!r} (locomo-mem, locomo-chunks, synthetic)")
    return cases


def parse_sizes(spec: str | None, quick: bool) -> dict[str, int]:
    base = QUICK if quick else DEFAULT
    if not spec:
        return dict(base)
    if spec.strip() == "none":  # the quality pass only
        return {}
    out: dict[str, int] = {}
    for item in spec.split(","):
        name, _, n = item.strip().partition(":")
        if name not in base:
            raise ValueError(f"unknown real-model workload {name!r}; known: {', '.join(base)}")
        out[name] = int(n) if n else base[name]
        if out[name] < 1:
            raise ValueError(f"{name}: request count must be positive")
    return out
