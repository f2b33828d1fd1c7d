"""Chat sessions: append-only history, dedup hints, bounded state."""

from __future__ import annotations

import asyncio

import pytest
from _support import as_messages, label_of, rendered
from contextpilot_mem0 import AsyncContextPilotMemory, ContextPilotMemory

import contextpilot as cp

FACTS = [
    "Bob plays the cello in a string quartet",
    "Bob's quartet rehearses on Thursday evenings",
    "Bob is allergic to peanuts",
    "Bob works as a nurse at the city hospital",
    "Bob's sister Carla lives in Madrid",
]
USER = {"user_id": "bob"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_second_turn_starts_with_whole_first_prompt_and_hints_repeats(memory):
    memory.add(as_messages(FACTS), user_id="bob", infer=False)
    cpm = ContextPilotMemory(memory, pilot=cp.ContextPilot())
    chat = cpm.chat("bob-1", filters=USER, top_k=3, threshold=0.0)
    p1 = chat.messages("When does the quartet rehearse?")
    chat.reply("On Thursday evenings.")
    p2 = chat.messages("What instrument does Bob play in his quartet?")
    assert p2[: len(p1)] == p1
    assert p2[len(p1)] == {"role": "assistant", "content": "On Thursday evenings."}
    # the engine sees the first prompt as an exact prefix of the second
    assert rendered(p2).startswith(rendered(p1))

    first = [f for f in FACTS if f in p1[-1]["content"]]
    turn = p2[-1]["content"]
    repeated = [f for f in first if f"[{label_of(f)}]" in turn]
    assert repeated, "both questions are about the quartet"
    for f in repeated:  # a hint, not the full memory again
        assert f not in turn
        assert f"[{label_of(f)}]\n(given earlier)" in turn
    assert turn.endswith("What instrument does Bob play in his quartet?")
    assert len(chat.history) == 3 and chat.history[-1]["role"] == "user"


def test_remember_stores_the_exchange_in_mem0(memory):
    cpm = ContextPilotMemory(memory)
    chat = cpm.chat("bob-2", filters=USER)
    chat.messages("I just adopted a cat named Miso")
    chat.reply("Congratulations on Miso!", remember=True, infer=False)
    stored = [r["memory"] for r in memory.get_all(filters=USER)["results"]]
    assert "I just adopted a cat named Miso" in stored
    with pytest.raises(ValueError, match="no question"):
        chat.reply("again")


def test_history_restarts_after_max_turns_without_dangling_hints(memory):
    memory.add(as_messages(FACTS), user_id="bob", infer=False)
    cpm = ContextPilotMemory(memory, max_turns=2)
    chat = cpm.chat("bob-3", filters=USER, top_k=2, threshold=0.0)
    q = "Where does Bob work?"
    first = chat.messages(q)
    chat.reply("a0")
    chat.messages(q)
    chat.reply("a1")
    assert "(given earlier)" in chat.history[-2]["content"]
    p3 = chat.messages(q)
    assert chat.restarts == 1 and len(p3) == 2  # system + this turn only
    assert "(given earlier)" not in p3[-1]["content"]
    assert p3 == first  # the memories in full again, as on the first turn


def test_sessions_are_bounded_by_count_and_idle_time(memory):
    memory.add(as_messages(FACTS), user_id="bob", infer=False)
    clock = Clock()
    pilot = cp.ContextPilot()
    cpm = ContextPilotMemory(memory, pilot=pilot, max_sessions=2, session_ttl=60, clock=clock)
    chats = [cpm.chat(f"s{i}", filters=USER, top_k=2, threshold=0.0) for i in range(3)]
    conversations = {}
    for c in chats:  # s0 was dropped when s2 came; using its handle starts it afresh
        c.messages("hello there")
        conversations[c.session_id] = c.conversation_id
    assert cpm.sessions() == ["s1", "s2"]
    # the dropped session's dedup state went with it; the live ones keep theirs
    live = {s["conversation_id"] for s in pilot.sessions()}
    assert conversations["s0"] not in live
    assert {conversations["s1"], conversations["s2"]} <= live
    clock.now = 61
    assert cpm.sessions() == []
    assert pilot.sessions() == []
    again = cpm.chat("s1", filters=USER)
    assert again.history == []
    assert cpm.end_session("s1") and not cpm.end_session("s1")


def test_async_memory_gives_the_same_prompts(memory, async_memory):
    memory.add(as_messages(FACTS), user_id="bob", infer=False)
    questions = ["What is Bob allergic to?", "Where does Bob's sister live?", "Is Bob allergic to nuts?"]

    sync = ContextPilotMemory(memory, pilot=cp.ContextPilot())
    chat = sync.chat("x", filters=USER, top_k=3, threshold=0.0)
    want = []
    for q in questions:
        want.append(chat.messages(q))
        chat.reply("ok")
    one_shot = [sync.messages(q, filters=USER, top_k=3, threshold=0.0) for q in questions]

    async def run():
        await async_memory.add(as_messages(FACTS), user_id="bob", infer=False)
        amem = AsyncContextPilotMemory(async_memory, pilot=cp.ContextPilot())
        achat = amem.chat("x", filters=USER, top_k=3, threshold=0.0)
        got = []
        for q in questions:
            got.append(await achat.messages(q))
            await achat.reply("ok")
        shots = [await amem.messages(q, filters=USER, top_k=3, threshold=0.0) for q in questions]
        return got, shots

    got, shots = asyncio.run(run())
    assert got == want
    assert shots == one_shot
