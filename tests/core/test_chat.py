"""Append-only chat sessions (``ContextPilot.chat`` / ``cp.ChatStore``):
prefix growth, honest hints, restarts, bounds, errors, threads."""

from __future__ import annotations

import random
import threading

import pytest

import contextpilot as cp
from contextpilot.sim.engine import render_chat

from support.clock import ManualClock

DOCS = [f"Document {i}: {' '.join(f'fact-{i}-{j}' for j in range(12))}." for i in range(12)]



def label(doc: str) -> str:
    """The label a prompt gives ``doc``, read off a rendered prompt."""
    return cp.build_messages([doc], "q", system_instruction="")[0]["content"].split("\n", 1)[0]


def dangling_hints(prompt: list[dict[str, str]], docs_per_turn: list[list[str]]) -> list[str]:
    """Documents shown only as a hint in ``prompt`` with no full copy earlier
    in it. ``docs_per_turn[t]`` are the documents asked for in the t-th user
    message of ``prompt``. Independent of the session's own bookkeeping: it
    reads the text the model would receive."""
    text = ""
    bad: list[str] = []
    assert sum(m["role"] == "user" for m in prompt) == len(docs_per_turn)
    turn = 0
    for m in prompt:
        content = m["content"]
        if m["role"] == "user":
            docs = docs_per_turn[turn]
            turn += 1
            for d in dict.fromkeys(docs):
                full = f"{label(d)}\n{d}"
                at = content.find(f"{label(d)}\n")
                assert at >= 0, f"{d[:20]} missing from its turn"
                if content.startswith(full, at):
                    continue
                # a hint: the full text must come earlier (history or this message)
                if full not in text + content[:at]:
                    bad.append(d)
        text += content + "\n"
    return bad


def test_each_prompt_starts_with_the_whole_previous_prompt_and_its_answer():
    pilot = cp.ContextPilot()
    chat = pilot.chat("u1")
    turns = [DOCS[0:3], DOCS[2:5], [], DOCS[4:8], DOCS[0:2]]
    prev: list[dict[str, str]] | None = None
    for t, docs in enumerate(turns):
        prompt = chat.messages(docs, f"question {t}?")
        assert prompt[0]["role"] == "system" and prompt[-1]["role"] == "user"
        assert prompt[-1]["content"].endswith(f"question {t}?")
        if prev is not None:
            assert prompt[: len(prev)] == prev  # prev ends with the last answer
            # what the engine renders: the previous prompt (and answer) is an exact prefix
            assert render_chat(prompt).startswith(render_chat(prev)[: -len("<assistant>:")])
        assert chat.reply(f"answer {t}") == f"question {t}?"
        prev = prompt + [{"role": "assistant", "content": f"answer {t}"}]
    assert chat.history == prev[1:]
    assert chat.turns == len(turns) and chat.restarts == 0 and chat.pending is None


def test_repeats_become_hints_that_point_into_the_same_history():
    pilot = cp.ContextPilot()
    chat = pilot.chat("u1")
    p1 = chat.messages(DOCS[0:3], "first?")
    chat.reply("a")
    p2 = chat.messages([DOCS[3], DOCS[1], DOCS[3]], "second?")
    turn = p2[-1]["content"]
    assert DOCS[1] not in turn and f"{label(DOCS[1])}\n(given earlier)\n" in turn
    assert turn.count(DOCS[3]) == 1  # repeated within the turn: the second copy is a hint
    assert DOCS[1] in p1[-1]["content"]
    # the relevance order is restated with the caller's order, labels by content
    rel = f"most relevant first: {label(DOCS[3])}, {label(DOCS[1])}\n\nsecond?"
    assert turn.endswith(rel)
    assert dangling_hints(p2, [DOCS[0:3], [DOCS[3], DOCS[1], DOCS[3]]]) == []


def test_documents_render_identically_in_every_turn_and_session():
    pilot = cp.ContextPilot()
    a, b = pilot.chat("a"), pilot.chat("b")
    pa = a.messages(DOCS[0:4], "q?")
    pb = b.messages(DOCS[0:4][::-1], "other q?")
    # a history's first turn is ordered by the live index: b follows a's cached order
    body = pa[-1]["content"].split("\n\nDocuments by relevance")[0]
    assert pb[-1]["content"].startswith(body)
    assert render_chat(pb).startswith(render_chat(pa).split("\n\nDocuments by relevance")[0])
    # later turns keep the caller's relevance order
    a.reply("x")
    p2 = a.messages([DOCS[7], DOCS[5], DOCS[6]], "q2?")
    t = p2[-1]["content"]
    assert t.index(DOCS[7]) < t.index(DOCS[5]) < t.index(DOCS[6])


def test_randomised_sessions_never_hint_at_missing_text():
    rng = random.Random(7)
    pilot = cp.ContextPilot()
    # tiny dedup memory: forgotten documents must be sent in full again
    pilot.conversations.max_blocks = 5
    store = cp.ChatStore(pilot, hint_template="(see {ref} above)", max_turns=4, max_sessions=3)
    asked: dict[str, list[list[str]]] = {}
    checked = hinted = 0
    for step in range(300):
        sid = f"s{rng.randrange(5)}"
        chat = store.session(sid)
        docs = [rng.choice(DOCS) for _ in range(rng.randrange(0, 6))]
        if chat.turns >= chat.max_turns or not chat.history:  # a new or restarting history
            asked[sid] = []
        prompt = chat.messages(docs, f"q{step}?")
        asked[sid].append(docs)
        assert dangling_hints(prompt, asked[sid]) == []
        checked += 1
        hinted += prompt[-1]["content"].count("(see ")
        if rng.random() < 0.8:
            chat.reply(f"a{step}")
        pilot.index.check()
    assert checked == 300 and hinted > 50


def test_the_checker_catches_optimize_hints_without_history():
    # the reference's failure: a fresh [system, user] per turn with hints to earlier turns
    pilot = cp.ContextPilot()
    pilot.optimize(DOCS[0:3], "first?", conversation_id="c")
    second = pilot.optimize(DOCS[1:4], "second?", conversation_id="c")
    user_turn = [{"role": "user", "content": second[0]["content"] + "\n\n" + second[1]["content"]}]
    assert sorted(dangling_hints(user_turn, [DOCS[1:4]])) == sorted(DOCS[1:3])


def test_history_restarts_after_max_turns_and_forgets_its_dedup_state():
    pilot = cp.ContextPilot()
    chat = pilot.chat("u1", max_turns=2)
    first = chat.messages(DOCS[0:2], "q?")
    chat.reply("a0")
    old_conversation = chat.conversation_id
    second = chat.messages(DOCS[0:2], "q?")
    assert "(given earlier)" in second[-1]["content"]
    chat.reply("a1")
    assert old_conversation in {s["conversation_id"] for s in pilot.sessions()}
    third = chat.messages(DOCS[0:2], "q?")
    assert chat.restarts == 1 and chat.turns == 1
    assert third == first  # system + this turn only, documents in full again
    assert "(given earlier)" not in third[-1]["content"]
    assert old_conversation not in {s["conversation_id"] for s in pilot.sessions()}
    assert chat.conversation_id != old_conversation


def test_live_index_learns_the_session_sequence():
    pilot = cp.ContextPilot()
    chat = pilot.chat("u1")
    chat.messages(DOCS[0:3], "q1?")
    rid1 = chat.last_request_id
    turn1 = pilot.index.stats().sent_tokens
    chat.reply("a1")
    chat.messages(DOCS[1:4], "q2?")
    rid2 = chat.last_request_id
    assert rid1 in pilot.index and rid2 in pilot.index and rid1 != rid2
    # turn 2's path starts with all of turn 1: the index counts it as cached
    assert turn1 > 0 and pilot.index.stats().hit_tokens == turn1
    pilot.index.check()
    stateless = cp.ContextPilot(stateless=True)
    s = stateless.chat("u1")
    s.messages(DOCS[0:3], "q?")
    assert s.last_request_id is None and len(stateless.index) == 0


def test_configurable_layout_and_hint():
    pilot = cp.ContextPilot(hint_template="(earlier: {ref})")
    chat = pilot.chat("u", system_instruction="")
    p1 = chat.messages(DOCS[0:1], "q?")
    assert [m["role"] for m in p1] == ["user"] and p1[0]["content"].startswith("Documents:\n\n")
    chat.reply("a")
    assert (
        f"{label(DOCS[0])}\n(earlier: {label(DOCS[0])[1:-1]})"
        in chat.messages(DOCS[0:1], "q?")[-1]["content"]
    )
    store = cp.ChatStore(pilot, system_instruction="Be brief.", header="", hint_template="(given earlier)")
    p = store.session("x").messages(DOCS[0:1], "q?")
    assert p[0] == {"role": "system", "content": "Be brief."}
    assert p[1]["content"].startswith(label(DOCS[0]))
    assert store.session("x").messages([], "plain question")[-1]["content"] == "plain question"


def test_misuse_gets_clear_errors_and_leaves_state_intact():
    pilot = cp.ContextPilot()
    chat = pilot.chat("u")
    with pytest.raises(ValueError, match="no question awaits"):
        chat.reply("too early")
    chat.messages(DOCS[0:2], "q?")
    before = chat.history
    bad_calls = [
        (lambda: chat.messages("a string", "q?"), "docs must be a list"),
        (lambda: chat.messages([DOCS[0], 3], "q?"), r"docs\[1\] must be a string"),
        (lambda: chat.messages(DOCS[0:1], ""), "query must be a non-empty string"),
        (lambda: chat.messages(DOCS[0:1], None), "query must be a non-empty string"),
        (lambda: chat.reply(42), "answer must be a string"),
        (lambda: pilot.chat(""), "session_id must be a non-empty string"),
        (lambda: pilot.chat(7), "session_id must be a non-empty string"),
        (lambda: pilot.chat("v", max_turns=0), "max_turns must be an int >= 1"),
        (lambda: pilot.chat("v", max_turns=True), "max_turns must be an int >= 1"),
        (lambda: pilot.chat("v", system_instruction=3), "system_instruction must be a string"),
        (lambda: pilot.chat("u", max_turns=3), "live with another max_turns"),
        (lambda: pilot.chat("u", system_instruction="other"), "live with another system_instruction"),
        (lambda: cp.ChatStore(pilot, hint_template="{nope}"), "unknown field"),
        (lambda: cp.ChatStore(pilot, max_sessions=0), "max_sessions"),
    ]
    for call, match in bad_calls:
        with pytest.raises(ValueError, match=match):
            call()
    assert chat.history == before and chat.pending == "q?"
    assert "v" not in pilot.chats
    assert pilot.chat("u", max_turns=64) is not None  # the same settings are fine
    chat.reply("ok")
    with pytest.raises(ValueError, match="no question awaits"):
        chat.reply("twice")


def test_sessions_are_bounded_and_take_their_dedup_state_with_them():
    clock = ManualClock()
    pilot = cp.ContextPilot()
    store = cp.ChatStore(pilot, max_sessions=2, session_ttl=60, clock=clock)
    convs, handles = {}, {}
    for sid in ("a", "b", "c"):
        s = handles[sid] = store.session(sid)
        s.messages(DOCS[0:2], "q?")
        convs[sid] = s.conversation_id
    assert store.ids() == ["b", "c"]
    live = {x["conversation_id"] for x in pilot.sessions()}
    assert convs["a"] not in live and {convs["b"], convs["c"]} <= live
    # a handle on a dropped session shows nothing, then starts a new, empty history
    a = handles["a"]
    assert not a.alive and a.history == [] and a.conversation_id is None
    with pytest.raises(ValueError, match="no question awaits"):
        a.reply("late answer")
    assert len(a.messages(DOCS[0:2], "q?")) == 2 and a.alive and store.ids() == ["c", "a"]
    clock.now = 61
    assert store.ids() == [] and pilot.sessions() == []
    # ending and resetting through the pilot
    p = pilot.chat("u")
    p.messages(DOCS[0:1], "q?")
    assert [x["session_id"] for x in pilot.chat_sessions()] == ["u"]
    assert pilot.stats()["chat_sessions"] == 1
    assert pilot.end_session("u") and not pilot.end_session("u")
    assert p.history == [] and pilot.sessions() == []
    pilot.chat("w").messages(DOCS[0:1], "q?")
    pilot.reset()
    assert pilot.chat_sessions() == [] and pilot.sessions() == []


def test_threads_keep_every_history_append_only():
    pilot = cp.ContextPilot()
    errors: list[BaseException] = []
    n_threads, n_turns = 6, 25

    def own_session(k: int) -> None:
        try:
            rng = random.Random(k)
            chat = pilot.chat(f"t{k}", max_turns=10)
            asked: list[list[str]] = []
            prev: list[dict[str, str]] = []
            for t in range(n_turns):
                docs = rng.sample(DOCS, 4)
                restarts = chat.restarts
                prompt = chat.messages(docs, f"q{t}?")
                if chat.restarts != restarts:
                    asked, prev = [], []
                asked.append(docs)
                assert prompt[: len(prev)] == prev
                assert dangling_hints(prompt, asked) == []
                chat.reply(f"a{t}")
                prev = prompt + [{"role": "assistant", "content": f"a{t}"}]
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    shared = pilot.chat("shared", max_turns=1000)
    got: list[list[dict[str, str]]] = []
    lock = threading.Lock()

    def hammer(k: int) -> None:
        try:
            for t in range(n_turns):
                p = shared.messages(DOCS[k : k + 3], f"h{k}-{t}?")
                with lock:
                    got.append(p)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=own_session, args=(k,)) for k in range(n_threads)]
    threads += [threading.Thread(target=hammer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    pilot.index.check()
    final = shared.history
    assert len(final) == 3 * n_turns
    for p in got:  # every prompt was a prefix of the one shared history
        assert p[1:] == final[: len(p) - 1]


def test_a_failed_turn_leaves_no_hint_behind():
    def counter(block):
        if "boom" in block:
            raise ValueError("cannot count this block")
        return len(block) // 4

    pilot = cp.ContextPilot(token_counter=counter)
    chat = pilot.chat("u")
    with pytest.raises(ValueError, match="cannot count"):
        chat.messages(DOCS[0:2], "boom?")  # fails after dedup saw the documents
    assert chat.history == [] and chat.pending is None
    prompt = chat.messages(DOCS[0:2], "fine?")
    assert DOCS[0] in prompt[-1]["content"] and DOCS[1] in prompt[-1]["content"]
    assert dangling_hints(prompt, [DOCS[0:2]]) == []
    with pytest.raises(ValueError, match="cannot count"):
        chat.reply("boom")
    assert chat.pending == "fine?" and len(chat.history) == 1
