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
from contextpilot_mem0 import ContextPilotMemory
from contextpilot_mem0.memory import CHAT_HINT

import contextpilot as cp

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
    filters = {"user_id": user}
    cpm = ContextPilotMemory(memory, pilot=cp.ContextPilot())
    out = Replay([], [], [], [])
    for q in questions:  # mem0's usual loop: a fresh [system, user] per question
        found = memory.search(q, filters=filters, top_k=top_k, threshold=0.0)
        out.one_shot_plain.append(cpm.build_messages(q, found))  # mem0's order, same template
        out.one_shot_ours.append(cpm.build_messages(q, cpm.reorder(found)))

    chat = cpm.chat(f"{user}-chat", filters=filters, top_k=top_k, threshold=0.0)
    history: list[dict[str, str]] = []
    for q, a in list(zip(questions, answers))[:chat_turns]:
        out.chat_ours.append(chat.messages(q))
        chat.reply(a)
        # plain mem0 with history: memories for this question in the system
        # message (mem0's order), then the conversation so far
        found = memory.search(q, filters=filters, top_k=top_k, threshold=0.0)
        system = cpm.build_messages(q, found)[0]
        out.chat_plain.append([system, *history, {"role": "user", "content": q}])
        history += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
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
    assert prompt_tokens(r.one_shot_ours) == prompt_tokens(r.one_shot_plain)

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
    # dedup: a memory is a short hint exactly when the prompt already holds it in full
    hinted = 0
    for m in r.chat_ours:
        in_full = {label for msg in m[:-1] for label, text in _memories(msg["content"]) if text != CHAT_HINT}
        for label, text in _memories(m[-1]["content"]):
            assert (text == CHAT_HINT) == (label in in_full), (label, text)
            hinted += text == CHAT_HINT
    figures["chat hinted memories"] = hinted
    assert hinted > 0
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


def test_both_orders_send_the_same_template_instruction_and_memories(memory):
    # guards the comparison: per question, plain and ours differ only in the order of the memories
    answers = [f"Answer {i}." for i in range(len(SMALL_QUESTIONS))]
    r = replay(memory, "dana", SMALL_FACTS, SMALL_QUESTIONS, answers, top_k=4, chat_turns=1)
    reordered = 0
    for plain, ours in zip(r.one_shot_plain, r.one_shot_ours):
        assert [m["role"] for m in plain] == [m["role"] for m in ours] == ["system", "user"]
        assert plain[1] == ours[1]  # the question and mem0's relevance order, restated alike
        p_head, *p_blocks = plain[0]["content"].split("\n\n")
        o_head, *o_blocks = ours[0]["content"].split("\n\n")
        assert p_head == o_head  # the same instruction
        assert sorted(p_blocks) == sorted(o_blocks) and len(p_blocks) == 4
        reordered += p_blocks != o_blocks
    assert reordered > 0  # else there was no order to compare
