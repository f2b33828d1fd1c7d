"""Prompts: two-query sessions share the longest possible prefix; chat
sessions are append-only with dedup hints; session state is bounded."""

from __future__ import annotations

import pytest
from _support import build_tree, common_prefix, handbook_markdown, label_of, rendered
from contextpilot_pageindex import DEFAULT_SYSTEM, ContextPilotPageIndex

import contextpilot as cp


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cpi(tmp_path):
    c = ContextPilotPageIndex(cp.ContextPilot())
    c.add_tree("hb", build_tree(tmp_path / "handbook.md", handbook_markdown()))
    return c


def test_two_query_session_second_prompt_starts_with_longest_shareable_prefix(cpi):
    q1, refs1 = "What leave do I get?", [("hb", "0006"), ("hb", "0007"), ("hb", "0008"), ("hb", "0002")]
    q2, refs2 = "Parental and sick leave?", [("hb", "0008"), ("hb", "0009"), ("hb", "0007"), ("hb", "0006")]
    p1, p2 = cpi.messages(q1, refs1), cpi.messages(q2, refs2)

    # the first prompt's sections in its order; the best the second can do is
    # repeat the longest run of them it also has (0002 is not in the second)
    b1 = cpi.select(refs1).blocks
    order1 = sorted(b1, key=lambda b: p1[0]["content"].index(b))
    wanted = set(cpi.select(refs2).blocks)
    run = []
    for b in order1:
        if b not in wanted:
            break
        run.append(b)
    assert len(run) >= 1
    head = cp.build_messages(run, q2, system_instruction=DEFAULT_SYSTEM)[0]["content"]
    best = rendered(p1).index(head) + len(head)
    assert rendered(p2)[:best] == rendered(p1)[:best]

    # retrieval order shares less (so the check above can fail)
    plain1 = cp.build_messages(b1, q1, system_instruction=DEFAULT_SYSTEM)
    plain2 = cp.build_messages(cpi.select(refs2).blocks, q2, system_instruction=DEFAULT_SYSTEM)
    assert common_prefix(rendered(plain1), rendered(plain2)) < best
    # the model is told the retrieval order, question last
    user = p2[1]["content"]
    labels = [label_of(b) for b in cpi.select(refs2).blocks]
    assert user.endswith(q2)
    assert [user.index(f"[{lab}]") for lab in labels] == sorted(user.index(f"[{lab}]") for lab in labels)


def test_tree_search_prompt_is_a_shared_prefix(cpi, tmp_path):
    cpi.add_tree("hb2", build_tree(tmp_path / "other.md", handbook_markdown().replace("25 days", "30 days")))
    one = cpi.tree_search_messages("Leave in the second handbook?", ["hb2"])
    both = cpi.tree_search_messages("How many days of leave?")
    again = cpi.tree_search_messages("Who approves overtime?")
    # the tree sent before comes first, so the whole earlier system message is a prefix
    assert both[0]["content"].startswith(one[0]["content"] + "\n\n")
    assert "Document hb " in both[0]["content"]
    assert again[0] == both[0]  # same trees: identical system message
    assert again[1]["content"].startswith("Question: Who approves overtime?")
    assert '"text"' not in both[0]["content"] and "Employees get" not in both[0]["content"]
    with pytest.raises(ValueError, match="unknown document"):
        cpi.tree_search_messages("q", ["missing"])


def test_chat_second_turn_starts_with_whole_first_prompt_and_hints_repeats(cpi):
    chat = cpi.chat("s1")
    p1 = chat.messages("Annual and sick leave?", [("hb", "0006"), ("hb", "0007")])
    chat.reply("25 days; a note after three days.")
    p2 = chat.messages("And parental leave?", [("hb", "0008"), ("hb", "0006")])
    assert p2[: len(p1)] == p1
    assert rendered(p2).startswith(rendered(p1))
    turn = p2[-1]["content"]
    annual = cpi.select([("hb", "0006")]).blocks[0]
    assert annual not in turn and f"[{label_of(annual)}]" in turn and "appeared earlier" in turn
    assert cpi.select([("hb", "0008")]).blocks[0] in turn
    chat.reply("16 weeks.")
    with pytest.raises(ValueError, match="no question"):
        chat.reply("again")


def test_chat_restarts_after_max_turns_and_sessions_are_bounded(tmp_path):
    clock, pilot = Clock(), cp.ContextPilot()
    cpi = ContextPilotPageIndex(pilot, max_turns=2, max_sessions=2, session_ttl=30, clock=clock)
    cpi.add_tree("hb", build_tree(tmp_path / "h.md", handbook_markdown()))
    chat = cpi.chat("s")
    refs = [("hb", "0006")]
    first = chat.messages("q?", refs)
    chat.reply("a")
    assert "appeared earlier" in chat.messages("q?", refs)[-1]["content"]
    chat.reply("b")
    assert chat.messages("q?", refs) == first and chat.restarts == 1
    for s in ("t", "u"):
        cpi.chat(s).messages("q?", refs)
    assert cpi.sessions() == ["t", "u"]
    assert len(pilot.sessions()) == 2  # the dropped session's dedup state went too
    clock.now = 31
    assert cpi.sessions() == [] and pilot.sessions() == []
