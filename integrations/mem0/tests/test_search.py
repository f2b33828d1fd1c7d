"""One-shot turns on a real offline mem0 Memory: reorder, shape, messages, errors."""

from __future__ import annotations

import pytest
from _support import as_messages, common_prefix, label_of, rendered
from contextpilot_mem0 import DEFAULT_SYSTEM, ContextPilotMemory

import contextpilot as cp

FACTS = [
    "Alice keeps a golden retriever called Rex",
    "Rex the dog loves chasing tennis balls in the park",
    "Alice eats green apples every morning",
    "Alice moved to Lyon in 2021 for work",
    "Alice's favourite fruit pie is apple pie",
    "Alice walks Rex along the river in Lyon",
]
USER = {"user_id": "alice"}


def _load(memory) -> None:
    memory.add(as_messages(FACTS), user_id="alice", infer=False)


def _texts(found: dict) -> list[str]:
    return [r["memory"] for r in found["results"]]


def test_search_keeps_mem0_results_and_reports_relevance(memory):
    _load(memory)
    cpm = ContextPilotMemory(memory, pilot=cp.ContextPilot())
    plain = memory.search("apples and fruit", filters=USER, top_k=4, threshold=0.0)
    ours = cpm.search("apples and fruit", filters=USER, top_k=4, threshold=0.0)
    assert len(ours["results"]) == len(plain["results"]) == 4
    # the same mem0 items (ids, scores, metadata untouched), possibly reordered
    assert sorted(r["id"] for r in ours["results"]) == sorted(r["id"] for r in plain["results"])
    back = [ours["results"][i]["id"] for i in ours["relevance_order"]]
    assert back == [r["id"] for r in plain["results"]]
    assert isinstance(ours["request_id"], str)
    # unknown attributes are mem0's own
    assert len(cpm.get_all(filters=USER)["results"]) == len(FACTS)


def test_two_query_session_second_prompt_starts_with_longest_shareable_prefix(memory):
    _load(memory)
    cpm = ContextPilotMemory(memory, pilot=cp.ContextPilot())
    q1, q2 = "what fruit does Alice eat, apples?", "where does Alice walk her dog Rex?"
    first = cpm.search(q1, filters=USER, top_k=5, threshold=0.0)
    second = cpm.search(q2, filters=USER, top_k=5, threshold=0.0)
    p1, p2 = cpm.build_messages(q1, first), cpm.build_messages(q2, second)

    # best possible: the longest run of the first prompt's memories that the
    # second question also retrieved, in the first prompt's order
    wanted = set(_texts(second))
    run: list[str] = []
    for t in _texts(first):
        if t not in wanted:
            break
        run.append(t)
    assert run, "fixture should make the two questions share memories"
    head = cp.build_messages(run, q2, system_instruction=DEFAULT_SYSTEM)[0]["content"]
    best = len(rendered([{"role": "system", "content": head}]).split(head)[0]) + len(head)
    assert rendered(p1)[:best] == rendered(p2)[:best]
    ours = common_prefix(rendered(p1), rendered(p2))
    assert ours >= best

    # mem0's own order shares less here (so the check above can fail)
    plain1 = cpm.build_messages(q1, memory.search(q1, filters=USER, top_k=5, threshold=0.0))
    plain2 = cpm.build_messages(q2, memory.search(q2, filters=USER, top_k=5, threshold=0.0))
    assert common_prefix(rendered(plain1), rendered(plain2)) < ours

    # the model still gets mem0's relevance order, and the question last
    labels = [label_of(t) for t in _texts(memory.search(q2, filters=USER, top_k=5, threshold=0.0))]
    user = p2[1]["content"]
    assert user.endswith(q2)
    assert [user.index(f"[{lab}]") for lab in labels] == sorted(user.index(f"[{lab}]") for lab in labels)


def test_messages_is_search_then_build(memory):
    _load(memory)
    cpm = ContextPilotMemory(memory, pilot=cp.ContextPilot(stateless=True), system_instruction="Be brief.")
    msgs = cpm.messages("Where does Alice live?", filters=USER, top_k=3, threshold=0.0)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"].startswith("Be brief.")
    assert sum(f in msgs[0]["content"] for f in FACTS) == 3


def test_empty_results_and_bad_input(memory):
    cpm = ContextPilotMemory(memory, pilot=cp.ContextPilot())
    empty = cpm.search("anything", filters={"user_id": "nobody"})
    assert empty["results"] == [] and empty["relevance_order"] == []
    assert cpm.build_messages("hi", empty)[1]["content"] == "hi"
    with pytest.raises(ValueError, match="query"):
        cpm.search("", filters=USER)
    with pytest.raises(ValueError, match=r"results\[1\]"):
        cpm.reorder({"results": [{"memory": "a"}, {"id": "x"}]})
    with pytest.raises(ValueError, match="relevance_order"):
        cpm.build_messages("q", {"results": [{"memory": "a"}], "relevance_order": [3]})
    with pytest.raises(ValueError, match="filters"):
        cpm.chat("s1", filters={"color": "red"})
    with pytest.raises(ValueError, match="max_turns"):
        ContextPilotMemory(memory, max_turns=0)
    with pytest.raises(ValueError, match="memory"):
        ContextPilotMemory(object())
    # mem0's own validation still applies (2.x filters)
    with pytest.raises(ValueError):
        cpm.search("q", filters={})
