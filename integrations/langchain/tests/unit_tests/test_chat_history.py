"""Dedup that cannot lie, with LangChain's own memory (RunnableWithMessageHistory).

Every prompt the chat model receives is captured by a callback handler and
run through the checker (``contextpilot.plugins.unseen_notes``): a note
whose document is not in the same prompt fails the test."""

from __future__ import annotations

from operator import itemgetter

import pytest
from langchain_contextpilot import ContextPilotChatHistory, ContextPilotChatPrompt, ContextPilotReorder
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage, trim_messages
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory
from lc_helpers import CAPITALS, Q1, Q2, shareable_prefix

from contextpilot.plugins import DEFAULT_NOTE, find_notes, render_block, unseen_notes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
BLOCKS = {k: render_block(k, v) for k, v in CAPITALS.items()}


class Prompts(BaseCallbackHandler):
    """Records the messages of every chat model call."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):  # noqa: ANN001
        self.seen.append([m.text for m in messages[0]])


def chat_chain(store, *, wrap: bool, trim: int | None = None, k: int = 4):
    histories: dict[str, object] = {}

    def history(session_id: str):
        if session_id not in histories:
            histories[session_id] = ContextPilotChatHistory() if wrap else InMemoryChatMessageHistory()
        return histories[session_id]

    past = itemgetter("history")
    if trim is not None:  # keep only the last `trim` messages: older turns leave the prompt
        past = past | trim_messages(max_tokens=trim, token_counter=len, strategy="last")
    chain = (
        {
            "context": itemgetter("question") | store.as_retriever(search_kwargs={"k": k}),
            "question": itemgetter("question"),
            "history": past,
        }
        | ContextPilotChatPrompt()
        | FakeListChatModel(responses=["I do not know."])
    )
    return RunnableWithMessageHistory(
        chain, history, input_messages_key="question", history_messages_key="history"
    ), histories


def assert_no_unseen_notes(prompts: list[list[str]]) -> int:
    """Fails on a note whose document is not in the same prompt; returns the notes each turn added."""
    notes = 0
    for i, prompt in enumerate(prompts):
        assert unseen_notes(prompt, BLOCKS, DEFAULT_NOTE) == [], f"prompt {i} has a note without its text"
        notes += len(find_notes(prompt[-1], DEFAULT_NOTE))
    return notes


def ask(chain, questions, session="s1") -> Prompts:
    cap = Prompts()
    for q in questions:
        chain.invoke({"question": q}, config={"configurable": {"session_id": session}, "callbacks": [cap]})
    return cap


def test_plain_history_keeps_no_documents_so_nothing_is_noted(store):
    """LangChain's usual memory stores questions and answers only: every turn
    gets its documents in full (the bug this replaces noted them)."""
    chain, histories = chat_chain(store, wrap=False)
    cap = ask(chain, [Q1, Q2, Q1])
    assert len(cap.seen) == 3 and assert_no_unseen_notes(cap.seen) == 0
    for prompt in cap.seen:
        assert sum(b in prompt[-1] for b in BLOCKS.values()) == 4  # all four documents in full
    assert [m.text for m in histories["s1"].messages[::2]] == [Q1, Q2, Q1]


def test_wrapped_history_keeps_documents_and_notes_point_at_them(store):
    chain, histories = chat_chain(store, wrap=True)
    cap = ask(chain, [Q1, Q2, Q1])
    notes = assert_no_unseen_notes(cap.seen)
    first, second = cap.seen[0][-1], cap.seen[1][-1]
    ids1 = {k for k, b in BLOCKS.items() if b in first}
    ids2 = set(find_notes(second, DEFAULT_NOTE))
    assert len(ids1) == 4 and ids2 == ids1 & {"es", "pt", "it", "de"} and len(ids2) == 3
    assert BLOCKS["es"] in second  # the new document goes in full
    assert set(find_notes(cap.seen[2][-1], DEFAULT_NOTE)) == ids1  # all four repeat
    assert notes == 3 + 4
    # the history stores each turn as the model received it, answers between
    stored = histories["s1"].messages
    assert [type(m) for m in stored] == [HumanMessage, AIMessage] * 3
    assert [m.text for m in stored[::2]] == [p[-1] for p in cap.seen]
    # every prompt starts with the previous one (system + history): the prefix grows
    for a, b in zip(cap.seen, cap.seen[1:]):
        assert b[: len(a)] == a


def test_trimmed_history_drops_notes_with_their_turn(store):
    """Only the last turn (2 messages) reaches the prompt: turn 3 may note
    only turn 2's documents, whatever the stored history holds."""
    chain, histories = chat_chain(store, wrap=True, trim=2)
    cap = ask(chain, [Q1, Q2, Q1])
    assert_no_unseen_notes(cap.seen)
    third = cap.seen[2]
    assert len(third) == 1 + 2 + 1  # system, last turn's two messages, this turn
    in_turn2 = {k for k, b in BLOCKS.items() if b in cap.seen[1][-1]}
    assert set(find_notes(third[-1], DEFAULT_NOTE)) == in_turn2 & {"pt", "it", "at", "de"}
    assert BLOCKS["at"] in third[-1]  # was in turn 1 only, which left the prompt: sent in full


def test_notes_kept_in_a_trimmed_history_never_dangle(store):
    """Turn 2 notes all of turn 1; a window keeps turn 2 only. The kept
    notes whose copy left the prompt (and is not re-sent) are marked gone."""
    chain, histories = chat_chain(store, wrap=True, trim=2)
    cap = ask(chain, [Q1, Q1, Q2])
    assert set(find_notes(cap.seen[1][-1], DEFAULT_NOTE)) == {"pt", "it", "at", "de"}
    assert_no_unseen_notes(cap.seen)
    third = cap.seen[2]
    assert "[at] (no longer in this conversation)" in third[1]  # turn 2's note, copy trimmed away
    assert all(BLOCKS[k] in third[-1] for k in ("pt", "it", "de", "es"))  # re-sent in full
    # the stored history is untouched: only the prompt copy changes
    assert histories["s1"].messages[2].text == cap.seen[1][-1]


async def test_async_with_wrapped_history(store):
    chain, _ = chat_chain(store, wrap=True)
    cap = Prompts()
    for q in (Q1, Q2):
        await chain.ainvoke({"question": q}, config={"configurable": {"session_id": "a"}, "callbacks": [cap]})
    assert assert_no_unseen_notes(cap.seen) == 3


def test_sessions_are_separate(store):
    chain, _ = chat_chain(store, wrap=True)
    ask(chain, [Q1], session="alice")
    cap = ask(chain, [Q2], session="bob")
    assert assert_no_unseen_notes(cap.seen) == 0


def test_first_turn_is_ordered_for_the_cache_and_relevance_restated(store):
    prompt = ContextPilotChatPrompt()
    docs1 = store.as_retriever(search_kwargs={"k": 4}).invoke(Q1)
    docs2 = store.as_retriever(search_kwargs={"k": 4}).invoke(Q2)
    m1 = prompt.invoke({"question": Q1, "context": docs1}).messages[-1].text
    m2 = prompt.invoke({"question": Q2, "context": docs2}).messages[-1].text

    def order(text: str) -> list[str]:
        return sorted(BLOCKS, key=lambda k: text.find(BLOCKS[k]) if BLOCKS[k] in text else 1 << 30)[:4]

    best = shareable_prefix(order(m1), {d.id for d in docs2})
    assert best >= 2 and order(m2)[:best] == order(m1)[:best]  # the second starts like the first
    assert "most relevant first: " + ", ".join(f"[{d.id}]" for d in docs2) in m2


def test_repeat_within_one_turn_is_noted_after_its_full_copy():
    a, b = Document("alpha", id="a"), Document("beta", id="b")
    text = ContextPilotChatPrompt().invoke({"question": "q", "context": [a, b, a]}).messages[-1].text
    assert text.count("[a]\nalpha") == 1 and find_notes(text, DEFAULT_NOTE) == ["a"]
    assert text.index("[a]\nalpha") < text.index("[a] (given earlier")
    assert unseen_notes([text], {"a": "[a]\nalpha"}, DEFAULT_NOTE) == []


def test_changed_text_under_the_same_id_is_sent_again():
    prompt = ContextPilotChatPrompt()
    history = [HumanMessage("[a]\nold text"), AIMessage("ok")]
    text = prompt.invoke({"question": "q", "context": [Document("new text", id="a")], "history": history})
    assert "[a]\nnew text" in text.messages[-1].text and not find_notes(text.messages[-1].text, DEFAULT_NOTE)


def test_no_dedup_option_and_bad_input():
    prompt = ContextPilotChatPrompt(deduplicate=False)
    history = [HumanMessage("[a]\nalpha")]
    out = prompt.invoke({"question": "q", "context": [Document("alpha", id="a")], "history": history})
    assert out.messages[-1].text.startswith("Documents:\n\n[a]\nalpha")
    with pytest.raises(ValueError, match="question"):
        prompt.invoke({"context": []})
    with pytest.raises(ValueError, match=r"input\['context'\]\[0\] must be a Document"):
        prompt.invoke({"question": "q", "context": ["x"]})
    with pytest.raises(ValueError, match=r"input\['history'\]\[0\] must be a message"):
        prompt.invoke({"question": "q", "context": [], "history": ["x"]})
    with pytest.raises(ValueError, match="note_template"):
        ContextPilotChatPrompt(note_template="(seen)")
    with pytest.raises(ValueError, match="max_pending"):
        ContextPilotChatHistory(max_pending=0)


def test_the_checker_fails_on_a_history_less_note(store):
    """What the old ``ContextPilotReorder(deduplicate=True)`` produced: a
    note in a prompt that does not carry the document. The checker catches it."""
    turn = "Documents:\n\n[fr] (given earlier in this conversation)\n\n[it]\n" + CAPITALS["it"] + "\n\nq"
    assert unseen_notes(["system", turn], BLOCKS, DEFAULT_NOTE) == ["fr"]
    assert unseen_notes(["system", BLOCKS["fr"], turn], BLOCKS, DEFAULT_NOTE) == []
    assert unseen_notes(["[zz] (given earlier in this conversation)"], BLOCKS, DEFAULT_NOTE) == ["zz"]
    with pytest.raises(ValueError, match="ContextPilotChatPrompt"):
        ContextPilotReorder(deduplicate=True)


def test_history_wrapper_bounds_and_passthrough():
    inner = InMemoryChatMessageHistory()
    h = ContextPilotChatHistory(inner, max_pending=2)
    for i in range(3):
        h.stage(f"q{i}", f"rendered {i}")
    h.add_messages([HumanMessage("q0"), HumanMessage("q2"), AIMessage("a")])
    assert [m.text for m in inner.messages] == ["q0", "rendered 2", "a"]  # q0 was dropped: stored plain
    h.clear()
    assert inner.messages == [] and h.messages == []
    with pytest.raises(ValueError, match="BaseChatMessageHistory"):
        ContextPilotChatHistory(RunnableLambda(lambda x: x))
