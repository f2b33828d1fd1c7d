"""Replay many questions over one PageIndex tree (built with md_to_tree),
nodes picked by a deterministic stand-in for the model's tree search, and
score the answer prompts with ``contextpilot.sim``: retrieval order vs
contextpilot for one-shot prompts, and plain history vs contextpilot's
append-only chat. Always runs on a handbook written here; also on a LoCoMo
conversation written out as markdown when ``locomo10.json`` is present."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from _support import (
    HANDBOOK_QUESTIONS,
    TreeSearch,
    build_tree,
    common_prefix,
    handbook_markdown,
    hit_ratio,
    locomo_markdown,
    locomo_sample,
    prompt_tokens,
    rendered,
    uncached_tokens,
)
from contextpilot_pageindex import ContextPilotPageIndex

import contextpilot as cp
from contextpilot.plugins import DEFAULT_NOTE, find_notes, unseen_notes


@dataclass
class Replay:
    one_shot_plain: list
    one_shot_ours: list
    chat_plain: list
    chat_ours: list
    duplicates: int


def replay(tree, questions, k: int, chat_turns: int) -> Replay:
    cpi = ContextPilotPageIndex(pilot=cp.ContextPilot())
    plain_cpi = ContextPilotPageIndex(pilot=cp.ContextPilot(stateless=True))  # same template, retrieval order
    cpi.add_tree("doc", tree)
    plain_cpi.add_tree("doc", tree)
    search = TreeSearch("doc", tree)
    out = Replay([], [], [], [], 0)
    for q in questions:
        refs = search(q, k)
        out.one_shot_plain.append(plain_cpi.messages(q, refs))
        out.one_shot_ours.append(cpi.messages(q, refs))
    history: list[dict[str, str]] = []
    plain_history: list[dict[str, str]] = []
    for i, q in enumerate(questions[:chat_turns]):
        refs = search(q, k)
        prompt = cpi.chat_messages(history, q, refs)
        out.chat_ours.append(prompt)
        answer = f"Answer {i}."
        history = [*prompt[1:], {"role": "assistant", "content": answer}]
        # plain: this question's sections in the system message, then the conversation
        system = plain_cpi.messages(q, refs)[0]
        out.chat_plain.append([system, *plain_history, {"role": "user", "content": q}])
        plain_history += [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]
    out.duplicates = len(cpi.select([]).refs)
    known = {}
    for q in questions[:chat_turns]:
        sel = cpi.select(search(q, k))
        known.update({lab: b for lab, b in zip(sel.labels, sel.blocks)})
    for p in out.chat_ours:  # no note without its section in the same prompt
        assert unseen_notes([m["content"] for m in p], known, DEFAULT_NOTE) == []
    return out


def check(r: Replay, name: str) -> None:
    figures: dict[str, object] = {}
    mean = prompt_tokens(r.one_shot_plain) / len(r.one_shot_plain)
    for label, cap in (("inf", None), ("16x", 16 * mean), ("2x", 2 * mean)):
        plain, ours = hit_ratio(r.one_shot_plain, cap), hit_ratio(r.one_shot_ours, cap)
        figures[f"one-shot retrieval-order {label}"], figures[f"one-shot ours {label}"] = plain, ours
        assert ours > plain, (label, plain, ours)
    for a, b in zip(r.one_shot_ours, r.one_shot_plain):
        assert sorted(a[0]["content"].split("\n\n[")) == sorted(b[0]["content"].split("\n\n["))

    texts = [rendered(m) for m in r.chat_ours]
    shared = [common_prefix(a, b) for a, b in zip(texts, texts[1:])]
    for prev, nxt in zip(texts, texts[1:]):
        assert nxt.startswith(prev)
    assert all(b > a for a, b in zip(shared, shared[1:]))
    plain_texts = [rendered(m) for m in r.chat_plain]
    plain_shared = max(common_prefix(a, b) for a, b in zip(plain_texts, plain_texts[1:]))
    figures["chat shared prefix first/last (chars)"] = (shared[0], shared[-1])
    figures["chat plain shared prefix max (chars)"] = plain_shared
    plain, ours = hit_ratio(r.chat_plain), hit_ratio(r.chat_ours)
    figures["chat plain inf"], figures["chat ours inf"] = plain, ours
    assert ours > plain
    figures["chat uncached tokens plain"] = uncached_tokens(r.chat_plain)
    figures["chat uncached tokens ours"] = uncached_tokens(r.chat_ours)
    assert figures["chat uncached tokens ours"] < figures["chat uncached tokens plain"]
    hinted = sum(len(find_notes(m[-1]["content"], DEFAULT_NOTE)) for m in r.chat_ours)
    figures["chat hinted sections"] = hinted
    assert hinted > 0
    shown = (f"{k} = {round(v, 3) if isinstance(v, float) else v}" for k, v in figures.items())
    print(f"\n{name}: " + "; ".join(shown))


def test_handbook(tmp_path):
    tree = build_tree(tmp_path / "handbook.md", handbook_markdown())
    questions = HANDBOOK_QUESTIONS + HANDBOOK_QUESTIONS[::2]
    check(replay(tree, questions, k=4, chat_turns=len(HANDBOOK_QUESTIONS)), "handbook (22 nodes, top-4)")


@pytest.mark.locomo  # CI's skip accounting: registered in the repository's pyproject.toml
@pytest.mark.skipif(
    locomo_sample() is None,
    reason="LoCoMo data not found (set CONTEXTPILOT_LOCOMO or place locomo10.json at ../shared/data/)",
)
def test_locomo_conversation_as_a_document(tmp_path):
    sample = locomo_sample(0)
    tree = build_tree(tmp_path / f"{sample['sample_id']}.md", locomo_markdown(sample))
    questions = [str(q["question"]) for q in sample["qa"]]
    r = replay(tree, questions, k=5, chat_turns=40)
    nodes = len(TreeSearch("doc", tree).nodes)
    check(r, f"LoCoMo {sample['sample_id']} as markdown ({nodes} nodes, {len(questions)} questions, top-5)")
