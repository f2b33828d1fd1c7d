"""Prompts from mem0 results, memories labelled by their mem0 id.

* :func:`memory_messages` — mem0's usual loop, one question at a time:
  ``[system, user]`` with the memories in the order given (the reranker's
  cache order) and mem0's relevance order restated for the model.
* :func:`chat_messages` — a chat whose history *you* keep (as mem0's
  examples do): returns ``[system] + history + [this turn]``, the memories
  in this turn's user message; a memory whose block (``[label]`` line and
  text) is already in a history message of that prompt becomes a note
  pointing at it. The check is by content on the history you pass, so a
  trimmed or restarted history is safe: memories that left it are sent in
  full again. Nothing is stored here; no session state to bound.

A label is the first 8 characters of the mem0 id, longer where two
memories of one prompt share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from contextpilot.plugins import DEFAULT_NOTE, chat_turn, clean_label, one_shot
from contextpilot_mem0.reranker import RANK_KEY, check_results

__all__ = ["CHAT_SYSTEM", "DEFAULT_SYSTEM", "MEMORY_HEADER", "chat_messages", "labels_of", "memory_messages"]

DEFAULT_SYSTEM = (
    "Answer the user's question using the memories about them below. Each memory starts with its "
    "label in square brackets."
)
CHAT_SYSTEM = (
    "You are a helpful assistant with long-term memory. A user turn may start with memories about the "
    "user, each labelled in square brackets; a memory already given earlier in this conversation is not "
    "repeated but referred to by its label."
)
MEMORY_HEADER = "Memories:"


def labels_of(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Short labels from mem0 ids: 8 characters, longer where they would clash."""
    ids = [clean_label(str(m["id"])) for m in items]
    width = 8
    while width < max((len(i) for i in ids), default=0) and len({i[:width] for i in set(ids)}) < len(
        set(ids)
    ):
        width += 4
    return [i[:width] for i in ids]


def _ranked(items: Sequence[Mapping[str, Any]], labels: list[str]) -> list[str]:
    """Labels in mem0's relevance order (the reranker's ``relevance_rank``, else as given)."""
    return [labels[p] for p in sorted(range(len(items)), key=lambda p: (items[p].get(RANK_KEY, p), p))]


def _memories(results: Any) -> tuple[list[str], list[str], dict[str, Any]]:
    """Checked mem0 results as labels, texts (in the order given) and the
    layout both prompt kinds use: mem0's relevance order, header, noun."""
    items = check_results(results)
    labels = labels_of(items)
    layout = {"ranked": _ranked(items, labels), "header": MEMORY_HEADER, "noun": "Memories"}
    return labels, [m["memory"] for m in items], layout


def memory_messages(
    query: str, results: Any, *, system_instruction: str = DEFAULT_SYSTEM
) -> list[dict[str, str]]:
    """``[system, user]`` for one question from mem0 ``search`` / ``get_all``
    output: memories in the order given, relevance restated, query last."""
    labels, texts, layout = _memories(results)
    return one_shot(query, labels, texts, system=system_instruction, **layout)


def chat_messages(
    history: Sequence[Mapping[str, Any]],
    query: str,
    results: Any,
    *,
    system_instruction: str = CHAT_SYSTEM,
    note_template: str = DEFAULT_NOTE,
) -> list[dict[str, str]]:
    """``[system] + history + [user]`` for one chat turn; see the module
    docstring. ``history``: the OpenAI-style messages of the conversation so
    far (user and assistant; a leading system message is dropped, since this
    function adds its own). Send the result as is; then keep ``result[1:]``
    plus the model's answer as the next turn's history. O(history characters)."""
    labels, texts, layout = _memories(results)
    return chat_turn(
        history, query, labels, texts, system=system_instruction, note_template=note_template, **layout
    )
