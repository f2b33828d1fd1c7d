"""Replay many questions over one PageIndex tree (built with md_to_tree),
nodes picked by a deterministic stand-in for the model's tree search, and
score the answer prompts with ``contextpilot.sim``: retrieval order vs
contextpilot for one-shot prompts, and plain history vs contextpilot's
append-only chat. Always runs on a handbook written here; also on a LoCoMo
conversation written out as markdown when ``locomo10.json`` is present."""

from __future__ import annotations

import pytest
from _support import HANDBOOK_QUESTIONS, TreeSearch, build_tree, handbook_markdown, locomo_markdown
from contextpilot_pageindex import ContextPilotPageIndex

import contextpilot as cp
from contextpilot.plugins import DEFAULT_NOTE, unseen_notes

from support.chat_scoring import ChatReplay, check_replay
from support.locomo import locomo_sample


def replay(tree, questions, k: int, chat_turns: int) -> ChatReplay:
    cpi = ContextPilotPageIndex(pilot=cp.ContextPilot())
    plain_cpi = ContextPilotPageIndex(pilot=cp.ContextPilot(stateless=True))  # same template, retrieval order
    cpi.add_tree("doc", tree)
    plain_cpi.add_tree("doc", tree)
    search = TreeSearch("doc", tree)
    out = ChatReplay()
    for q in questions:
        refs = search(q, k)
        out.one_shot(plain_cpi.messages(q, refs), cpi.messages(q, refs))
    out.chat(
        ((q, f"Answer {i}.") for i, q in enumerate(questions[:chat_turns])),
        lambda history, q: cpi.chat_messages(history, q, search(q, k)),
        # plain: this question's sections in the system message, then the conversation
        lambda q: plain_cpi.messages(q, search(q, k))[0],
    )
    known = {}
    for q in questions[:chat_turns]:
        sel = cpi.select(search(q, k))
        known.update({lab: b for lab, b in zip(sel.labels, sel.blocks)})
    for p in out.chat_ours:  # no note without its section in the same prompt
        assert unseen_notes([m["content"] for m in p], known, DEFAULT_NOTE) == []
    return out


def test_handbook(tmp_path):
    tree = build_tree(tmp_path / "handbook.md", handbook_markdown())
    questions = HANDBOOK_QUESTIONS + HANDBOOK_QUESTIONS[::2]
    r = replay(tree, questions, k=4, chat_turns=len(HANDBOOK_QUESTIONS))
    check_replay(r, "handbook (22 nodes, top-4)", block_sep="\n\n[", unit="sections")


@pytest.mark.locomo  # CI's skip accounting: a registered marker (pyproject.toml)
def test_locomo_conversation_as_a_document(tmp_path, locomo_path):
    sample = locomo_sample(locomo_path, 0)
    tree = build_tree(tmp_path / f"{sample['sample_id']}.md", locomo_markdown(sample))
    questions = [str(q["question"]) for q in sample["qa"]]
    r = replay(tree, questions, k=5, chat_turns=40)
    nodes = len(TreeSearch("doc", tree).nodes)
    name = f"LoCoMo {sample['sample_id']} as markdown ({nodes} nodes, {len(questions)} questions, top-5)"
    check_replay(r, name, block_sep="\n\n[", unit="sections")
