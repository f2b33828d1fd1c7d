"""Trees built with PageIndex's own ``md_to_tree`` from markdown the tests
write, and a deterministic stand-in for the model's tree search (BM25 over
the nodes' text)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path
from typing import Any

from pageindex import md_to_tree

from contextpilot.bench.bm25 import BM25

HANDBOOK = {
    "Working hours": {
        "Core hours": "Core hours run from 10:00 to 16:00 on weekdays.",
        "Flexible time": "Outside core hours staff choose when to work, up to 40 hours a week.",
        "Overtime": "Overtime needs written approval from a manager and is paid at 150 percent.",
    },
    "Leave": {
        "Annual leave": "Employees get 25 days of annual leave plus public holidays.",
        "Sick leave": "Sick leave longer than three days needs a doctor's note.",
        "Parental leave": "Parents may take up to 16 weeks of paid parental leave.",
        "Unpaid leave": "Unpaid leave of up to three months can be requested once a year.",
    },
    "Expenses": {
        "Travel": "Train travel is second class unless the journey exceeds four hours.",
        "Meals": "Meals on business trips are refunded up to 40 euros a day.",
        "Receipts": "Submit receipts within 30 days through the expenses portal.",
    },
    "Equipment": {
        "Laptops": "Every employee receives a laptop, replaced every four years.",
        "Phones": "Phones are provided for staff who are on call.",
        "Home office": "A one-off home office budget of 500 euros covers a desk and a chair.",
    },
    "Security": {
        "Passwords": "Passwords must be at least 14 characters and never reused.",
        "Badges": "Badges must be worn visibly inside the office.",
        "Incidents": "Report security incidents to the security team within one hour.",
    },
}
HANDBOOK_QUESTIONS = [
    "How many days of annual leave do employees get?",
    "When do I need a doctor's note for sick leave?",
    "How long is parental leave?",
    "Is overtime paid and who approves it?",
    "What are the core hours?",
    "Which class is train travel?",
    "How much is refunded for meals on business trips?",
    "When must receipts be submitted?",
    "How often are laptops replaced?",
    "What does the home office budget cover?",
    "How long must passwords be?",
    "How fast must security incidents be reported?",
    "Can I take unpaid leave and for how long?",
    "How many hours a week can I work with flexible time?",
]


def handbook_markdown() -> str:
    parts = ["# Staff handbook", "", "Rules for everyone working at the company.", ""]
    for chapter, sections in HANDBOOK.items():
        parts += [f"## {chapter}", "", f"This chapter covers {chapter.lower()}.", ""]
        for title, text in sections.items():
            parts += [f"### {title}", "", text, ""]
    return "\n".join(parts)


def locomo_markdown(sample: dict[str, Any], turns_per_part: int = 8) -> str:
    """A LoCoMo conversation as a markdown document: a section per session,
    a subsection per ``turns_per_part`` dialogue turns."""
    conv = sample["conversation"]
    keys = sorted((k for k in conv if k.startswith("session_") and k[8:].isdigit()), key=lambda k: int(k[8:]))
    parts = [f"# Conversation {sample['sample_id']}", ""]
    for key in keys:
        parts += [f"## Session {key[8:]} ({conv.get(key + '_date_time', '')})", ""]
        turns = conv[key]
        for start in range(0, len(turns), turns_per_part):
            chunk = turns[start : start + turns_per_part]
            parts += [f"### Turns {start + 1}-{start + len(chunk)}", ""]
            parts += [f"{t['speaker']}: {t['text']}" for t in chunk]
            parts.append("")
    return "\n".join(parts)


def build_tree(path: Path, text: str, **kwargs: Any) -> dict[str, Any]:
    """Write ``text`` to ``path`` and parse it with PageIndex's ``md_to_tree``."""
    path.write_text(text, encoding="utf-8")
    kwargs.setdefault("if_add_node_text", "yes")
    with contextlib.redirect_stdout(io.StringIO()):  # md_to_tree prints progress
        return asyncio.run(md_to_tree(str(path), **kwargs))


def flatten(tree: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list(reversed(tree["structure"]))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.get("nodes") or []))
    return out


class TreeSearch:
    """Stand-in for the model's tree search: BM25 over node title + text."""

    def __init__(self, doc_id: str, tree: dict[str, Any]) -> None:
        self.doc_id = doc_id
        self.nodes = [n for n in flatten(tree) if n.get("text")]
        self.bm25 = BM25([f"{n['title']}\n{n['text']}" for n in self.nodes])

    def __call__(self, query: str, k: int) -> list[tuple[str, str]]:
        return [(self.doc_id, self.nodes[i]["node_id"]) for i in self.bm25.top_k(query, k)]
