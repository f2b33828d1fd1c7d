"""OpenAI-style messages: documents in our order, relevance order restated.

Reordering documents for the cache must not cost answer quality, so the
prompt tells the model the original (retrieval) relevance order. Each
document carries a label derived from its own content (never its position),
so a document's tokens are identical in every prompt it appears in and
prefixes stay shareable. Layout:

* system: the instruction, then the documents in our order;
* user: the relevance line (labels, most relevant first), then the query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from contextpilot.core.blocks import Block
from contextpilot.core.dedup import doc_ref

__all__ = [
    "DEFAULT_SYSTEM",
    "build_messages",
    "check_docs",
    "relevance_line",
    "relevance_of_labels",
    "render_documents",
]

DEFAULT_SYSTEM = (
    "Answer the user's question using the documents below. Each document starts "
    "with its label in square brackets."
)


def check_docs(docs: Any, name: str = "docs") -> list[str]:
    """``docs`` as a list of strings, or ValueError naming the bad position."""
    if isinstance(docs, (str, bytes)) or not isinstance(docs, Sequence):
        raise ValueError(f"{name} must be a list of document strings")
    for j, d in enumerate(docs):
        if not isinstance(d, str):
            raise ValueError(f"{name}[{j}] must be a string, got {type(d).__name__}")
    return list(docs)


def _render(doc: Block) -> str:
    return doc if isinstance(doc, str) else str(doc)


def relevance_of_labels(labels: Iterable[str], noun: str = "Documents") -> str:
    """``<noun> by relevance to the question, most relevant first: [a], [b]``,
    the labels as given (the one wording of the relevance line)."""
    order = ", ".join(f"[{lab}]" for lab in labels)
    return f"{noun} by relevance to the question, most relevant first: {order}"


def relevance_line(original: Sequence[Block]) -> str:
    """The relevance line of documents ``original`` (most relevant first,
    a repeated document listed once), labelled by content."""
    return relevance_of_labels(doc_ref(d) for d in dict.fromkeys(original))


def render_documents(ordered: Sequence[Block], hints: dict[int, str] | None = None) -> str:
    """The documents of one prompt, in order: ``[label]`` then the text (or
    its reference hint), blank lines between. A document renders the same
    way in every prompt, which is what lets prompts share its tokens."""
    hints = hints or {}
    return "\n\n".join(f"[{doc_ref(doc)}]\n{hints.get(i, _render(doc))}" for i, doc in enumerate(ordered))


def build_messages(
    ordered: Sequence[Block],
    query: str,
    *,
    original: Sequence[Block] | None = None,
    system_instruction: str | None = None,
    hints: dict[int, str] | None = None,
) -> list[dict[str, str]]:
    """Messages for one request.

    ``ordered``: documents in prompt order; ``original``: the same documents
    in relevance order (default: ``ordered``); ``hints``: positions in
    ``ordered`` whose text is replaced by a reference hint (multi-turn
    dedup), still labelled so the relevance line resolves.
    """
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    instruction = DEFAULT_SYSTEM if system_instruction is None else system_instruction
    parts = [instruction] if instruction else []
    if ordered:
        parts.append(render_documents(ordered, hints))
    system = "\n\n".join(parts)
    rel = relevance_line(original if original is not None else ordered)
    user = f"{rel}\n\n{query}" if ordered else query
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
