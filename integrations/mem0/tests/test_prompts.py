"""Prompts labelled by mem0 id; chat turns whose notes only point at memories
in the history passed in (checked on every prompt by ``unseen_notes``)."""

from __future__ import annotations

import pytest
from _support import as_messages
from contextpilot_mem0 import CHAT_SYSTEM, RANK_KEY, chat_messages, labels_of, memory_messages

from contextpilot.plugins import DEFAULT_NOTE, find_notes, render_block, unseen_notes

FACTS = [
    "Bo plays the cello in an orchestra",
    "Bo's orchestra rehearses on Thursdays",
    "Bo grew up in Bergen",
    "Bo's cat is called Miso",
    "Miso is afraid of the vacuum cleaner",
]
QUESTIONS = [
    "What does Bo play?",
    "When does the orchestra rehearse?",
    "Where did Bo grow up?",
    "Tell me about Miso",
]


def corpus(results_list) -> dict[str, str]:
    out = {}
    for res in results_list:
        items = res["results"]
        for lab, m in zip(labels_of(items), items):
            out[lab] = render_block(lab, m["memory"])
    return out


def test_one_shot_prompt_labels_memories_by_mem0_id(ranked_memory):
    ranked_memory.add(as_messages(FACTS), user_id="bo", infer=False)
    found = ranked_memory.search(
        "Bo and the cello", filters={"user_id": "bo"}, top_k=3, threshold=0.0, rerank=True
    )
    system, user = memory_messages("What does Bo play?", found)
    items = found["results"]
    for m in items:
        assert f"[{m['id'][:8]}]\n{m['memory']}" in system["content"]
    # prompt order is the reranker's, the relevance line is mem0's order
    positions = [system["content"].index(m["memory"]) for m in items]
    assert positions == sorted(positions)
    by_rank = sorted(items, key=lambda m: m[RANK_KEY])
    assert "most relevant first: " + ", ".join(f"[{m['id'][:8]}]" for m in by_rank) in user["content"]
    assert user["content"].endswith("What does Bo play?")
    # get_all output works too
    assert (
        memory_messages("q", ranked_memory.get_all(filters={"user_id": "bo"}))[0]["content"].count("\n[") == 5
    )


def test_chat_with_a_history_you_keep(ranked_memory):
    ranked_memory.add(as_messages(FACTS), user_id="bo", infer=False)
    history: list[dict[str, str]] = []
    prompts, seen = [], []
    for q in QUESTIONS * 2:
        found = ranked_memory.search(q, filters={"user_id": "bo"}, top_k=3, threshold=0.0, rerank=True)
        seen.append(found)
        prompt = chat_messages(history, q, found)
        prompts.append(prompt)
        history = [*prompt[1:], {"role": "assistant", "content": f"answer to {q}"}]
    known = corpus(seen)
    notes = 0
    for p in prompts:
        assert p[0] == {"role": "system", "content": CHAT_SYSTEM}
        assert unseen_notes([m["content"] for m in p], known, DEFAULT_NOTE) == []
        notes += len(find_notes(p[-1]["content"], DEFAULT_NOTE))
    assert notes >= 4  # the second pass over the questions is mostly notes
    # each prompt starts with the previous one and its answer: the prefix grows
    for a, b in zip(prompts, prompts[1:]):
        assert b[: len(a)] == a


def test_a_history_without_the_memories_gets_them_in_full():
    found = {"results": [{"id": "0123456789", "memory": "alpha"}]}
    plain = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "ok"}]
    p = chat_messages(plain, "q", found)
    assert "[01234567]\nalpha" in p[-1]["content"] and not find_notes(p[-1]["content"], DEFAULT_NOTE)
    # a trimmed history whose kept turn notes a dropped one: that note is marked gone
    noted = [
        {"role": "user", "content": "Memories:\n\n[zzzzzzzz] (given earlier in this conversation)\n\nq0"}
    ]
    p = chat_messages(noted, "q", found)
    assert "[zzzzzzzz] (no longer in this conversation)" in p[1]["content"]
    assert unseen_notes([m["content"] for m in p], {"01234567": "[01234567]\nalpha"}, DEFAULT_NOTE) == []


def test_labels_grow_when_ids_share_a_prefix():
    items = [
        {"id": "abcdefgh-1111", "memory": "x"},
        {"id": "abcdefgh-2222", "memory": "y"},
        {"id": "zz", "memory": "z"},
    ]
    assert labels_of(items) == ["abcdefgh-111", "abcdefgh-222", "zz"]


def test_bad_input():
    with pytest.raises(ValueError, match="query"):
        memory_messages(" ", {"results": []})
    with pytest.raises(ValueError, match=r"results\[0\] has no mem0 'id'"):
        memory_messages("q", {"results": [{"memory": "x"}]})
    with pytest.raises(ValueError, match=r"history\[0\] must be a message"):
        chat_messages(["hi"], "q", {"results": []})
    assert memory_messages("q", {"results": []}) == [
        {"role": "system", "content": memory_messages("q", [])[0]["content"]},
        {"role": "user", "content": "q"},
    ]
