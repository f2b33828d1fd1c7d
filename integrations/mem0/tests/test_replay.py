"""Replay a conversation's questions through a real mem0 Memory, plain mem0
order against contextpilot, and score the prompts a model would receive
with ``contextpilot.sim`` (the simulated engine's template and tokenizer).

Always runs on a small conversation written here; also on a LoCoMo
conversation (Maharana et al., ACL 2024) when ``locomo10.json`` is present.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pytest
from _support import (
    as_messages,
    common_prefix,
    hit_ratio,
    locomo_conversation,
    locomo_path,
    prompt_tokens,
    rendered,
    uncached_tokens,
)
from contextpilot_mem0 import ContextPilotReranker, chat_messages, memory_messages

from contextpilot.plugins import DEFAULT_NOTE, find_notes

log = logging.getLogger(__name__)

SMALL_FACTS = [
    "Dana trains for the Berlin marathon in September",
    "Dana runs 40 kilometres a week before work",
    "Dana's running coach is called Ibrahim",
    "Dana is vegetarian and avoids fish",
    "Dana cooks lentil curry on Sundays",
    "Dana's brother Felix studies physics in Zurich",
    "Felix visits Dana every December",
    "Dana adopted a grey cat named Pixel",
    "Pixel sleeps on the radiator in winter",
    "Dana works as a product designer at a bike company",
    "Dana's company makes cargo bikes",
    "Dana learned Portuguese before a trip to Lisbon",
]
SMALL_QUESTIONS = [
    "Which marathon is Dana training for?",
    "How many kilometres does Dana run each week?",
    "Who coaches Dana's running?",
    "What does Dana cook on Sundays?",
    "Is Dana vegetarian?",
    "Where does Dana's brother study?",
    "When does Felix visit Dana?",
    "What is the name of Dana's cat?",
    "Where does Pixel sleep in winter?",
    "What does Dana's company make?",
    "What does Dana do at work?",
    "Which language did Dana learn for Lisbon?",
]


_MEMORY = re.compile(r"^\[([^\]\n]+)\]\n(.+)$", re.M)


def _memories(content: str) -> list[tuple[str, str]]:
    """(label, text) of each labelled memory in a message."""
    return _MEMORY.findall(content)


@dataclass
class Replay:
    one_shot_plain: list
    one_shot_ours: list
    chat_plain: list
    chat_ours: list


def replay(memory, user: str, facts, questions, answers, top_k: int, chat_turns: int) -> Replay:
    memory.add(as_messages(facts), user_id=user, infer=False)
    memory.reranker = ContextPilotReranker()  # what the "contextpilot" provider config builds
    filters = {"user_id": user}
    out = Replay([], [], [], [])
    for q in questions:  # mem0's usual loop: a fresh [system, user] per question
        plain = memory.search(q, filters=filters, top_k=top_k, threshold=0.0)
        # the same results through the reranker (two searches may break score ties differently)
        ours = {"results": memory.reranker.rerank(q, plain["results"], top_k)}
        out.one_shot_plain.append(memory_messages(q, plain))  # mem0's order, same template
        out.one_shot_ours.append(memory_messages(q, ours))

    history: list[dict[str, str]] = []  # ours: the history holds each turn as sent
    plain_history: list[dict[str, str]] = []  # plain: questions and answers only
    for q, a in list(zip(questions, answers))[:chat_turns]:
        found = memory.search(q, filters=filters, top_k=top_k, threshold=0.0, rerank=True)
        prompt = chat_messages(history, q, found)
        out.chat_ours.append(prompt)
        history = [*prompt[1:], {"role": "assistant", "content": a}]
        # plain mem0 with history: memories for this question in the system
        # message (mem0's order), then the conversation so far
        system = memory_messages(q, memory.search(q, filters=filters, top_k=top_k, threshold=0.0))[0]
        out.chat_plain.append([system, *plain_history, {"role": "user", "content": q}])
        plain_history += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return out


def check(r: Replay, name: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    # one-shot turns: contextpilot's order shares more prompt tokens
    mean = prompt_tokens(r.one_shot_plain) / len(r.one_shot_plain)
    for label, cap in (("inf", None), ("16x", 16 * mean), ("2x", 2 * mean)):
        plain, ours = hit_ratio(r.one_shot_plain, cap), hit_ratio(r.one_shot_ours, cap)
        figures[f"one-shot plain {label}"], figures[f"one-shot ours {label}"] = plain, ours
        assert ours > plain, (label, plain, ours)
    # the same memories reach the model, only the order differs
    for a, b in zip(r.one_shot_ours, r.one_shot_plain):
        assert sorted(a[0]["content"].split("\n\n")) == sorted(b[0]["content"].split("\n\n"))

    # chat: every prompt starts with the whole previous prompt, so the shared
    # prefix grows turn over turn; plain mem0 rebuilds the system message
    texts = [rendered(m) for m in r.chat_ours]
    shared = [common_prefix(a, b) for a, b in zip(texts, texts[1:])]
    for prev, nxt, s in zip(texts, texts[1:], shared):
        assert nxt.startswith(prev) and s == len(prev)
    assert all(b > a for a, b in zip(shared, shared[1:]))
    plain_texts = [rendered(m) for m in r.chat_plain]
    plain_shared = [common_prefix(a, b) for a, b in zip(plain_texts, plain_texts[1:])]
    figures["chat shared prefix first/last (chars)"] = (shared[0], shared[-1])
    figures["chat plain shared prefix max (chars)"] = max(plain_shared)
    assert shared[-1] > 4 * max(plain_shared)
    plain, ours = hit_ratio(r.chat_plain), hit_ratio(r.chat_ours)
    figures["chat plain inf"], figures["chat ours inf"] = plain, ours
    assert ours > plain
    # ours sends the history (memories included) every turn, yet computes less
    figures["chat uncached tokens plain"] = uncached_tokens(r.chat_plain)
    figures["chat uncached tokens ours"] = uncached_tokens(r.chat_ours)
    assert figures["chat uncached tokens ours"] < figures["chat uncached tokens plain"]
    # dedup: repeated memories become short hints
    last_turns = [m[-1]["content"] for m in r.chat_ours]
    figures["chat hinted memories"] = sum(len(find_notes(t, DEFAULT_NOTE)) for t in last_turns)
    assert figures["chat hinted memories"] > 0
    print(
        f"\n{name}: "
        + "; ".join(f"{k} = {v if isinstance(v, tuple) else round(v, 3)}" for k, v in figures.items())
    )
    return figures


def test_small_conversation(memory):
    answers = [f"Answer {i}." for i in range(len(SMALL_QUESTIONS))]
    r = replay(
        memory, "dana", SMALL_FACTS, SMALL_QUESTIONS, answers, top_k=4, chat_turns=len(SMALL_QUESTIONS)
    )
    check(r, "small conversation (12 memories, 12 questions, top-4)")


@pytest.mark.locomo  # CI's skip accounting: registered in the repository's pyproject.toml
@pytest.mark.skipif(
    locomo_path() is None,
    reason="LoCoMo data not found (set CONTEXTPILOT_LOCOMO or place locomo10.json at ../shared/data/)",
)
def test_locomo_conversation(memory):
    user, facts, qa = locomo_conversation(0)
    questions = [q for q, _ in qa]
    answers = [a for _, a in qa]
    r = replay(memory, user, facts, questions, answers, top_k=10, chat_turns=60)
    check(r, f"LoCoMo {user} ({len(facts)} memories, {len(questions)} questions, top-10, 60 chat turns)")
