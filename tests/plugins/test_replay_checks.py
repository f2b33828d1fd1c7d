"""The checks the plugins' suites share (tests/support) must be able to fail:
``check_replay`` rejects a replay where contextpilot gained nothing,
``ChatReplay.chat`` builds the append-only history it promises,
``assert_reuses_prefix`` rejects a second request that starts elsewhere, and
``word_vector`` ranks by word overlap, the same way on every run."""

from __future__ import annotations

import math

import pytest

from contextpilot.plugins import DEFAULT_NOTE

from support.chat_scoring import ChatReplay, check_replay
from support.embedding import word_vector
from support.plugin_fixtures import assert_reuses_prefix

Messages = list[dict[str, str]]

DOCS = {k: f"Document {k}: " + " ".join(f"{k}-fact-{i}" for i in range(30)) for k in "abcdef"}
#: each question's documents in contextpilot's order: shared ones first
OURS = ["abcd", "abce", "abcf", "abde"]
#: the same sets in a retrieval order that shares no prefix
PLAIN = [keys[i:] + keys[:i] for i, keys in enumerate(OURS)]


def _system(keys: str) -> dict[str, str]:
    return {"role": "system", "content": "\n\n".join(DOCS[k] for k in keys)}


def _replay(ours_order: bool = True) -> ChatReplay:
    """One-shot: question i's documents in ``OURS`` order (``ours_order``)
    or ``PLAIN`` order. Chat: ours sends a document in full once and a note
    after that (what the plugins' chat prompts do), plain puts question i's
    documents in the system message."""
    r = ChatReplay()
    for i, (ours, plain) in enumerate(zip(OURS, PLAIN)):
        user = {"role": "user", "content": f"q{i}"}
        r.one_shot([_system(plain), user], [_system(ours if ours_order else plain), user])

    def ours_turn(history: Messages, q: str) -> Messages:
        sent = "".join(m["content"] for m in history)
        parts = [DEFAULT_NOTE.format(label=k) if DOCS[k] in sent else DOCS[k] for k in OURS[int(q[1:])]]
        return [{"role": "system", "content": "Answer from the documents."}, *history,
                {"role": "user", "content": "\n\n".join([*parts, q])}]  # fmt: skip

    r.chat(
        ((f"q{i}", f"answer {i}") for i in range(len(OURS))), ours_turn, lambda q: _system(PLAIN[int(q[1:])])
    )
    return r


def test_chat_builds_an_append_only_history():
    r = _replay()
    assert len(r.chat_ours) == len(r.chat_plain) == len(OURS)
    for prev, nxt in zip(r.chat_ours, r.chat_ours[1:]):
        # the previous prompt less its system message, then its answer, then the new turn
        assert nxt[1 : len(prev)] == prev[1:]
        assert nxt[len(prev)] == {"role": "assistant", "content": f"answer {len(prev) // 2 - 1}"}
    # plain: this question's system message, then the bare questions and answers so far
    last = r.chat_plain[-1]
    assert last[0] == _system(PLAIN[-1])
    assert [m["content"] for m in last[1:]] == ["q0", "answer 0", "q1", "answer 1", "q2", "answer 2", "q3"]


def test_check_replay_passes_a_replay_that_gains():
    figures = check_replay(_replay(), "gains")
    assert figures["one-shot ours inf"] > figures["one-shot plain inf"]
    # notes: a, b, c in turns 2 and 3; a, b, d, e in turn 4
    assert figures["chat hinted documents"] == 10


def test_check_replay_rejects_a_replay_that_gains_nothing():
    with pytest.raises(AssertionError):
        check_replay(_replay(ours_order=False), "no gain")


def test_check_replay_rejects_other_documents():
    r = _replay()
    r.one_shot_ours[0] = [_system("abce"), r.one_shot_ours[0][1]]
    with pytest.raises(AssertionError):
        check_replay(r, "other documents")


def test_check_replay_rejects_a_history_that_is_rebuilt():
    r = _replay()
    r.chat_ours[2] = [r.chat_ours[2][0], *r.chat_ours[2][3:]]  # the first turn dropped
    with pytest.raises(AssertionError):
        check_replay(r, "rebuilt history")


def test_assert_reuses_prefix():
    assert assert_reuses_prefix(["a", "b", "c"], ["a", "b", "d"]) == 2
    with pytest.raises(AssertionError):
        assert_reuses_prefix(["a", "b", "c"], ["b", "a", "c"])  # same documents, another start
    with pytest.raises(AssertionError):
        assert_reuses_prefix(["a", "x"], ["a", "y"])  # one shared document, two required
    assert assert_reuses_prefix(["a", "x"], ["a", "y"], at_least=1) == 1


def test_word_vector_ranks_by_overlap():
    def cos(a: str, b: str) -> float:
        return sum(x * y for x, y in zip(word_vector(a), word_vector(b)))

    q = "Where does the choir perform in May?"
    assert cos(q, "The choir performs at the cathedral in May") > cos(q, "Erin drives an old green Volvo")
    v = word_vector("Paris is the capital of France")
    assert v == word_vector("paris IS the capital of france!")  # case and punctuation do not count
    assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0)
    assert len(word_vector("x", dims=16)) == 16
    assert word_vector("the of a", stop_words={"the", "of", "a"}) == [0.0] * 256
