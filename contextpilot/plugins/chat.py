"""One chat turn over a history the caller keeps, for plugins whose users
hold the conversation themselves (mem0, PageIndex): ``[system] + history +
[this turn]``, the turn's documents labelled, a document the history already
shows replaced by a note that points at it (see :mod:`.notes`), kept notes
whose copy a trimmed history lost marked gone, then the relevance order and
the question. Stateless: nothing to bound. O(history characters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from contextpilot.core.prompt import relevance_of_labels
from contextpilot.plugins.notes import DEFAULT_NOTE, History, render_block, render_turn, settle_history

__all__ = ["chat_turn", "check_history", "one_shot", "relevance_line"]


def relevance_line(labels: Sequence[str], noun: str = "Documents") -> str:
    """``<noun> by relevance to the question, most relevant first: [a], [b]``
    (a repeated label listed once; the wording is the core prompt's)."""
    return relevance_of_labels(dict.fromkeys(labels), noun)


def check_history(history: Any) -> list[dict[str, str]]:
    """OpenAI-style messages, copied; a leading system message is dropped
    (the turn adds its own); ``ValueError`` naming a bad message."""
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise ValueError("history must be a list of messages {'role': ..., 'content': str}")
    out = []
    for i, m in enumerate(history):
        if (
            not isinstance(m, Mapping)
            or not isinstance(m.get("content"), str)
            or not isinstance(m.get("role"), str)
        ):
            raise ValueError(f"history[{i}] must be a message {{'role': ..., 'content': str}}")
        if not (i == 0 and m["role"] == "system"):
            out.append({"role": m["role"], "content": m["content"]})
    return out


def _check_query(query: Any) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string")
    return query


def chat_turn(
    history: Any,
    query: str,
    labels: Sequence[str],
    texts: Sequence[str],
    *,
    ranked: Sequence[str] | None = None,
    header: str,
    system: str,
    noun: str = "Documents",
    note_template: str = DEFAULT_NOTE,
) -> list[dict[str, str]]:
    """The prompt of one chat turn; ``labels``/``texts`` in prompt order,
    ``ranked`` the labels most relevant first (default: prompt order)."""
    _check_query(query)
    past = check_history(history)
    content = query
    if texts:
        turn = render_turn(labels, texts, History([m["content"] for m in past], note_template), note_template)
        body = [header] if header else []
        content = "\n\n".join([*body, turn.content, relevance_line(ranked or labels, noun), query])
    settled = settle_history([m["content"] for m in past], content, note_template)
    past = [{**m, "content": text} for m, text in zip(past, settled)]
    head = [{"role": "system", "content": system}] if system else []
    return [*head, *past, {"role": "user", "content": content}]


def one_shot(
    query: str,
    labels: Sequence[str],
    texts: Sequence[str],
    *,
    ranked: Sequence[str] | None = None,
    header: str,
    system: str,
    noun: str = "Documents",
) -> list[dict[str, str]]:
    """``[system, user]`` for one question: the system message holds the
    instruction and the labelled documents in prompt order (a prefix other
    prompts can share); the user message restates relevance, then the query."""
    _check_query(query)
    blocks = "\n\n".join(render_block(lab, t) for lab, t in zip(labels, texts))
    sys_text = "\n\n".join(p for p in (system, header if texts else "", blocks) if p)
    user = f"{relevance_line(ranked or labels, noun)}\n\n{query}" if texts else query
    return [{"role": "system", "content": sys_text}, {"role": "user", "content": user}]
