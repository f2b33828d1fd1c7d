"""Prompts: one-question prompts share the longest possible prefix; chats over
a history the caller keeps note only sections that history holds."""

from __future__ import annotations

import pytest
from _support import build_tree, handbook_markdown
from contextpilot_pageindex import CHAT_SYSTEM, ContextPilotPageIndex

import contextpilot as cp
from contextpilot.plugins import DEFAULT_NOTE, find_notes, unseen_notes

from support.chat_scoring import common_prefix, rendered


@pytest.fixture
def cpi(tmp_path):
    c = ContextPilotPageIndex(pilot=cp.ContextPilot())
    c.add_tree("hb", build_tree(tmp_path / "handbook.md", handbook_markdown()))
    return c


def order_in(prompt: str, labels: list[str]) -> list[str]:
    return sorted(labels, key=lambda lab: prompt.index(f"[{lab}]\n"))


def test_two_questions_second_prompt_starts_with_longest_shareable_prefix(cpi):
    q1, refs1 = "What leave do I get?", [("hb", "0006"), ("hb", "0007"), ("hb", "0008"), ("hb", "0002")]
    q2, refs2 = "Parental and sick leave?", [("hb", "0008"), ("hb", "0009"), ("hb", "0007"), ("hb", "0006")]
    p1, p2 = cpi.messages(q1, refs1), cpi.messages(q2, refs2)
    o1 = order_in(p1[0]["content"], [f"hb:{n}" for _, n in refs1])
    o2 = order_in(p2[0]["content"], [f"hb:{n}" for _, n in refs2])
    run = 0
    while run < len(o1) and o1[run] in o2:
        run += 1
    assert run >= 1 and o2[:run] == o1[:run]
    # retrieval order (a stateless planner keeps it) shares less
    plain = ContextPilotPageIndex(pilot=cp.ContextPilot(stateless=True))
    plain.add_tree("hb", build_tree_from(cpi))
    shared_plain = common_prefix(rendered(plain.messages(q1, refs1)), rendered(plain.messages(q2, refs2)))
    assert common_prefix(rendered(p1), rendered(p2)) > shared_plain
    # the model is told the retrieval order, question last
    assert p2[1]["content"].endswith(q2)
    assert "most relevant first: [hb:0008], [hb:0009], [hb:0007], [hb:0006]" in p2[1]["content"]


def build_tree_from(cpi):
    # the same nodes again (registered trees are not exported): rebuild from the handbook
    import tempfile
    from pathlib import Path

    return build_tree(Path(tempfile.mkdtemp()) / "handbook.md", handbook_markdown())


def test_chat_notes_only_what_the_history_holds(cpi):
    turns = [
        ("Annual leave?", [("hb", "0006"), ("hb", "0007")]),
        ("Parental leave?", [("hb", "0008"), ("hb", "0006")]),
        ("Annual leave again?", [("hb", "0006"), ("hb", "0007")]),
    ]
    known = {}
    history: list[dict[str, str]] = []
    prompts = []
    for q, refs in turns:
        sel = cpi.select(refs)
        known.update(zip(sel.labels, sel.blocks))
        p = cpi.chat_messages(history, q, refs)
        prompts.append(p)
        history = [*p[1:], {"role": "assistant", "content": "ok"}]
    assert prompts[0][0] == {"role": "system", "content": CHAT_SYSTEM}
    assert find_notes(prompts[0][-1]["content"], DEFAULT_NOTE) == []
    assert find_notes(prompts[1][-1]["content"], DEFAULT_NOTE) == ["hb:0006"]
    assert sorted(find_notes(prompts[2][-1]["content"], DEFAULT_NOTE)) == ["hb:0006", "hb:0007"]
    for a, b in zip(prompts, prompts[1:]):
        assert b[: len(a)] == a  # append-only: the prefix grows
    for p in prompts:
        assert unseen_notes([m["content"] for m in p], known, DEFAULT_NOTE) == []
    # a history without the sections (questions and answers only) gets them in full
    plain = [{"role": "user", "content": "Annual leave?"}, {"role": "assistant", "content": "25 days"}]
    p = cpi.chat_messages(plain, "Again?", [("hb", "0006")])
    assert known["hb:0006"] in p[-1]["content"] and not find_notes(p[-1]["content"], DEFAULT_NOTE)


def test_bad_input(cpi):
    with pytest.raises(ValueError, match="query"):
        cpi.messages(" ", [])
    with pytest.raises(ValueError, match=r"history\[0\]"):
        cpi.chat_messages([1], "q", [])
    with pytest.raises(ValueError, match="pageindex client"):
        cpi.add_document("x")
