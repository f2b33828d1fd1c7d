"""Replay a conversation's questions through a real mem0 Memory, plain mem0
order against contextpilot, and score the prompts a model would receive
with ``contextpilot.sim`` (the simulated engine's template and tokenizer).

Always runs on a small conversation written here; also on a LoCoMo
conversation (Maharana et al., ACL 2024) when ``locomo10.json`` is present.
"""

from __future__ import annotations

import pytest
from _support import as_messages, locomo_conversation
from contextpilot_mem0 import ContextPilotReranker, chat_messages, memory_messages

from support.chat_scoring import ChatReplay, check_replay

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


def replay(memory, user: str, facts, questions, answers, top_k: int, chat_turns: int) -> ChatReplay:
    memory.add(as_messages(facts), user_id=user, infer=False)
    memory.reranker = ContextPilotReranker()  # what the "contextpilot" provider config builds
    filters = {"user_id": user}
    out = ChatReplay()
    for q in questions:  # mem0's usual loop: a fresh [system, user] per question
        plain = memory.search(q, filters=filters, top_k=top_k, threshold=0.0)
        # the same results through the reranker (two searches may break score ties differently)
        ours = {"results": memory.reranker.rerank(q, plain["results"], top_k)}
        out.one_shot(memory_messages(q, plain), memory_messages(q, ours))  # same template, mem0's order

    def ours_turn(history: list[dict[str, str]], q: str) -> list[dict[str, str]]:
        return chat_messages(
            history, q, memory.search(q, filters=filters, top_k=top_k, threshold=0.0, rerank=True)
        )

    def plain_system(q: str) -> dict[str, str]:
        # plain mem0 with history: memories for this question in the system message, mem0's order
        return memory_messages(q, memory.search(q, filters=filters, top_k=top_k, threshold=0.0))[0]

    out.chat(list(zip(questions, answers))[:chat_turns], ours_turn, plain_system)
    return out


def test_small_conversation(memory):
    answers = [f"Answer {i}." for i in range(len(SMALL_QUESTIONS))]
    r = replay(
        memory, "dana", SMALL_FACTS, SMALL_QUESTIONS, answers, top_k=4, chat_turns=len(SMALL_QUESTIONS)
    )
    check_replay(r, "small conversation (12 memories, 12 questions, top-4)", unit="memories")


@pytest.mark.locomo  # CI's skip accounting: a registered marker (pyproject.toml)
def test_locomo_conversation(memory, locomo_path):
    user, facts, qa = locomo_conversation(locomo_path, 0)
    questions = [q for q, _ in qa]
    answers = [a for _, a in qa]
    r = replay(memory, user, facts, questions, answers, top_k=10, chat_turns=60)
    check_replay(
        r,
        f"LoCoMo {user} ({len(facts)} memories, {len(questions)} questions, top-10, 60 chat turns)",
        unit="memories",
    )
