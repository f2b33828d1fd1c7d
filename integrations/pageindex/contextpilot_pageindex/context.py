"""PageIndex retrieval results in prefix-cache-friendly prompts, labelled ``doc:node``.

Where PageIndex users get their units from, all accepted as is:

* the local or cloud client (``pageindex.PageIndexClient``):
  :meth:`ContextPilotPageIndex.add_document` pulls a document's tree
  (``get_tree(include_text=True)``) and pages (``get_page_content``);
* ``md_to_tree`` / ``get_tree`` / ``get_document_structure`` output
  (:meth:`~ContextPilotPageIndex.add_tree`), page contents from the client or
  the agent tool ``get_page_content`` (:meth:`~ContextPilotPageIndex.add_pages`);
* what retrieval found: node refs from a tree search, page refs from the
  agent tool's output (:func:`refs_from_tool_result`) or from the answer's
  citations (:func:`refs_from_citations`, ``client.get_citations``).

Prompts (the public contextpilot plugin API underneath):

* :meth:`ContextPilotPageIndex.messages` — one question: the sections, each
  node and page once, ordered by contextpilot against what earlier prompts
  sent, the retrieval order restated;
* :meth:`ContextPilotPageIndex.chat_messages` — a chat over a history the
  caller keeps: a section whose block is already in that history becomes a
  note pointing at it, nothing else (no session state to bound).

State: the registered documents (``max_documents``, LRU) and the planner's
live index (its own caps).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from contextpilot.plugins import DEFAULT_NOTE, Item, Planner, chat_turn, estimate_tokens, one_shot, stable_key
from contextpilot_pageindex.tree import DocumentStore, Ref, Selection

__all__ = [
    "CHAT_SYSTEM",
    "DEFAULT_SYSTEM",
    "SECTIONS_HEADER",
    "ContextPilotPageIndex",
    "refs_from_citations",
    "refs_from_tool_result",
]

DEFAULT_SYSTEM = (
    "Answer the user's question using the document sections below. Each section starts with its label "
    "(document:node or document:page) in square brackets, then its document, title path and pages."
)
CHAT_SYSTEM = (
    "You answer questions about documents. A user turn may start with document sections, each labelled "
    "in square brackets; a section already given earlier in this conversation is not repeated but "
    "referred to by its label."
)
SECTIONS_HEADER = "Document sections:"


def refs_from_citations(citations: Any) -> list[Ref]:
    """Page refs from ``client.get_citations(answer)`` (``[{'doc_id', 'page', ...}]``),
    in order, once each."""
    if isinstance(citations, (str, bytes)) or not isinstance(citations, Sequence):
        raise ValueError("citations must be get_citations() output: a list of {'doc_id', 'page'}")
    refs: list[Ref] = []
    for i, c in enumerate(citations):
        doc, page = (c.get("doc_id"), c.get("page")) if isinstance(c, Mapping) else (None, None)
        if not isinstance(doc, str) or isinstance(page, bool) or not isinstance(page, int):
            raise ValueError(f"citations[{i}] needs a string 'doc_id' and an int 'page'")
        refs.append((doc, page))
    return list(dict.fromkeys(refs))


def refs_from_tool_result(doc_id: str, result: Any) -> list[Ref]:
    """Page refs from the agent tool ``get_page_content``'s result (its JSON
    text or dict: ``{"content": [{"page", "text"}]}``) for document ``doc_id``."""
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError:
            raise ValueError("tool result is not JSON") from None
    content = result.get("content") if isinstance(result, Mapping) else None
    if not isinstance(content, list):
        raise ValueError("tool result has no 'content' list (get_page_content output)")
    return [
        (doc_id, int(p["page"])) for p in content if isinstance(p, Mapping) and isinstance(p.get("page"), int)
    ]


def _check_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


class ContextPilotPageIndex:
    """Registered PageIndex documents -> prompts; see the module docstring.

    ``client``: a ``pageindex.PageIndexClient`` to pull documents from
    (optional); ``pilot`` / ``server_url`` / ``capacity_tokens``: where
    planning happens (default: a fresh local pilot).
    """

    def __init__(
        self,
        client: Any = None,
        *,
        pilot: Any = None,
        server_url: str | None = None,
        api_key: str | None = None,
        capacity_tokens: float | None = None,
        system_instruction: str = DEFAULT_SYSTEM,
        chat_instruction: str = CHAT_SYSTEM,
        note_template: str = DEFAULT_NOTE,
        max_documents: int = 1_000,
    ) -> None:
        self.client = client
        self.planner = Planner(
            pilot=pilot, server_url=server_url, api_key=api_key, capacity_tokens=capacity_tokens
        )
        self.pilot = self.planner.pilot
        self.system_instruction = system_instruction
        self.chat_instruction = chat_instruction
        self.note_template = note_template
        self._lock = threading.Lock()
        self._docs = DocumentStore(max_documents)

    # -- documents -----------------------------------------------------------------

    def add_document(self, doc_id: str, client: Any = None) -> int:
        """Pull ``doc_id``'s tree (with text) and pages from the PageIndex client."""
        client = client if client is not None else self.client
        if client is None or not hasattr(client, "get_tree"):
            raise ValueError(
                "add_document needs a pageindex client (ContextPilotPageIndex(client) or client=)"
            )
        tree = client.get_tree(doc_id, include_text=True)
        count = self.add_tree(doc_id, tree)
        meta = client.get_document(doc_id) if hasattr(client, "get_document") else {}
        pages = (meta or {}).get("page_count") or (meta or {}).get("pageNum")
        if isinstance(pages, int) and pages > 0:
            self.add_pages(doc_id, client.get_page_content(doc_id, f"1-{pages}"))
        return count

    def add_tree(self, doc_id: str, tree: Any) -> int:
        """Register a tree (``md_to_tree`` / ``get_tree`` output or a node list)."""
        with self._lock:
            return self._docs.add_tree(doc_id, tree)

    def add_pages(self, doc_id: str, pages: Any) -> int:
        """Register page contents (``get_page_content`` or agent-tool output)."""
        with self._lock:
            return self._docs.add_pages(doc_id, pages)

    def remove_document(self, doc_id: str) -> bool:
        with self._lock:
            return self._docs.remove(doc_id)

    def documents(self) -> list[str]:
        with self._lock:
            return self._docs.ids()

    def select(self, refs: Sequence[Ref]) -> Selection:
        """Units for ``refs`` in the given order, each node/page once."""
        with self._lock:
            return self._docs.select(refs)

    # -- prompts -------------------------------------------------------------------

    def messages(self, query: str, refs: Sequence[Ref]) -> list[dict[str, str]]:
        """``[system, user]`` for one question: the sections in cache order
        (recorded as sent), the retrieval order restated. One planning call."""
        _check_text(query, "query")
        sel = self.select(refs)
        order = list(range(len(sel.texts)))
        if sel.texts:
            items = [Item(stable_key(b), estimate_tokens(b)) for b in sel.blocks]
            order = self.planner.plan([items], [None], False)[0].order
        return one_shot(
            query,
            [sel.labels[p] for p in order],
            [sel.texts[p] for p in order],
            ranked=sel.labels,
            header=SECTIONS_HEADER,
            system=self.system_instruction,
            noun="Sections",
        )

    def chat_messages(self, history: Any, query: str, refs: Sequence[Ref]) -> list[dict[str, str]]:
        """``[system] + history + [this turn]``; send it as is and keep
        ``result[1:]`` plus the answer as the next history. Sections keep
        the retrieval order (they follow this conversation's own history)."""
        sel = self.select(refs)
        return chat_turn(
            history,
            query,
            sel.labels,
            sel.texts,
            header=SECTIONS_HEADER,
            system=self.chat_instruction,
            noun="Sections",
            note_template=self.note_template,
        )
