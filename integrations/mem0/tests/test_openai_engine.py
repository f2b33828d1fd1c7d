"""The chat loop end to end: a real ``openai`` client sends the plugin's
messages to contextpilot's simulated OpenAI-compatible engine (a separate
process with a token-level prefix cache), which reports
``usage.prompt_tokens_details.cached_tokens`` like vLLM and SGLang do."""

from __future__ import annotations

import openai
import pytest
from _support import as_messages
from contextpilot_mem0 import ContextPilotReranker, chat_messages, memory_messages

from support.plugin_fixtures import flush_cache

FACTS = [
    "Erin grows tomatoes and basil on her balcony",
    "Erin's balcony faces south",
    "Erin teaches chemistry at a secondary school",
    "Erin's students built a weather station last term",
    "Erin drives an old green Volvo",
    "The Volvo needs new brakes this spring",
    "Erin sings alto in a community choir",
    "The choir performs at the cathedral in May",
]
QUESTIONS = [
    "What does Erin grow on her balcony?",
    "Which way does the balcony face?",
    "What subject does Erin teach?",
    "What did her students build?",
    "What car does Erin drive?",
    "What does the Volvo need?",
    "What does Erin sing in the choir?",
    "Where does the choir perform?",
]
USER = {"user_id": "erin"}


@pytest.fixture
def client(sim_engine):
    """A real openai client of the simulated engine, whose cache starts empty."""
    flush_cache(sim_engine.url)
    c = openai.OpenAI(base_url=f"{sim_engine.url}/v1", api_key="sk-local", max_retries=0)
    yield c, sim_engine
    c.close()


def _send(c: openai.OpenAI, messages: list[dict[str, str]]) -> tuple[str, int, int]:
    r = c.chat.completions.create(model="sim-engine", messages=messages)
    return r.choices[0].message.content, r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens


def test_chat_loop_cached_tokens_grow_turn_over_turn(memory, client):
    c, proc = client
    memory.add(as_messages(FACTS), user_id="erin", infer=False)
    memory.reranker = ContextPilotReranker()

    ours = []
    history: list[dict[str, str]] = []
    for q in QUESTIONS:
        found = memory.search(q, filters=USER, top_k=3, threshold=0.0, rerank=True)
        prompt = chat_messages(history, q, found)
        answer, total, cached = _send(c, prompt)
        history = [*prompt[1:], {"role": "assistant", "content": answer}]
        ours.append((total, cached))
    # every turn finds the whole previous prompt in the engine's cache
    for (prev_total, _), (_, cached) in zip(ours, ours[1:]):
        assert cached >= prev_total
    assert all(b[1] > a[1] for a, b in zip(ours, ours[1:]))

    flush_cache(proc.url)
    history = []
    plain = []
    for q in QUESTIONS:  # mem0's usual chat loop: memories in the system message
        found = memory.search(q, filters=USER, top_k=3, threshold=0.0)
        lines = "\n".join(f"- {r['memory']}" for r in found["results"])
        msgs = [{"role": "system", "content": f"Answer using these memories:\n{lines}"}, *history]
        msgs.append({"role": "user", "content": q})
        answer, total, cached = _send(c, msgs)
        history += [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]
        plain.append((total, cached))
    ours_ratio = sum(x for _, x in ours) / sum(t for t, _ in ours)
    plain_ratio = sum(x for _, x in plain) / sum(t for t, _ in plain)
    print(f"\nengine cached/prompt tokens, 8-turn chat: plain mem0 {plain_ratio:.3f}, ours {ours_ratio:.3f}")
    assert ours_ratio > plain_ratio


def test_one_shot_loop_engine_reuses_more_with_contextpilot_order(memory, client):
    c, proc = client
    memory.add(as_messages(FACTS), user_id="erin", infer=False)
    memory.reranker = ContextPilotReranker()
    questions = QUESTIONS + QUESTIONS[::-1]

    def run(build) -> float:
        flush_cache(proc.url)
        hit = total = 0
        for q in questions:
            _, t, x = _send(c, build(q))
            hit, total = hit + x, total + t
        return hit / total

    plain = run(lambda q: memory_messages(q, memory.search(q, filters=USER, top_k=5, threshold=0.0)))
    ours = run(
        lambda q: memory_messages(q, memory.search(q, filters=USER, top_k=5, threshold=0.0, rerank=True))
    )
    print(f"\nengine cached/prompt tokens, one-shot: plain mem0 order {plain:.3f}, ours {ours:.3f}")
    assert ours > plain
