"""PageIndex retrieval results in prefix-cache-friendly prompts.

PageIndex retrieves by reasoning over a document's tree: a model reads the
tree structure and names nodes, then the nodes' text (or pages) goes to a
model with the question. Both prompts are built here with the public
contextpilot API:

* :meth:`ContextPilotPageIndex.tree_search_messages` — the registered
  trees (without text) before the question, ordered by the pilot so
  repeated searches over the same documents share the whole tree prefix;
* :meth:`ContextPilotPageIndex.messages` — one question: the selected
  nodes/pages, each once, reordered by the pilot against what earlier
  prompts sent, the retrieval order restated for the model;
* :meth:`ContextPilotPageIndex.chat` — contextpilot's append-only chat
  session (:class:`contextpilot.ChatStore`) fed with the selected
  sections; a node or page the history already holds is replaced by a
  reference hint, so each prompt starts with the whole previous one.

State is bounded: documents (``max_documents``, LRU), chat sessions
(``max_sessions``, idle ``session_ttl``, history restarted after
``max_turns``), and the pilot's own index caps.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import contextpilot as cp
from contextpilot_pageindex.tree import DocumentStore, Ref, Selection

__all__ = [
    "CHAT_SYSTEM",
    "DEFAULT_SYSTEM",
    "TREE_SEARCH_SYSTEM",
    "ContextPilotPageIndex",
    "PageIndexChat",
    "parse_node_list",
]

DEFAULT_SYSTEM = (
    "Answer the user's question using the document sections below. Each section starts with its label "
    "in square brackets, then its document, title path and pages."
)
CHAT_SYSTEM = (
    "You answer questions about documents. A user turn may start with document sections, each labelled "
    "in square brackets; a section already given earlier in this conversation is not repeated but "
    "referred to by its label."
)
TREE_SEARCH_SYSTEM = (
    "You are given the tree structure of one or more documents as JSON (title, node_id, page or line "
    "range, summary). Find every node likely to contain the answer to the user's question."
)
TREE_SEARCH_FORMAT = (
    'Reply in JSON: {"thinking": "<your reasoning>", "node_list": ["<doc_id>:<node_id>", ...]}'
)
SECTIONS_HEADER = "Document sections:"


def _check_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def parse_node_list(answer: Any, default_doc_id: str | None = None) -> list[Ref]:
    """Refs from a tree search answer: JSON text or a dict with ``node_list``
    entries ``"doc_id:node_id"`` (or bare ``node_id`` with ``default_doc_id``)."""
    if isinstance(answer, str):
        text = answer.strip()
        start, end = text.find("{"), text.rfind("}")
        try:
            answer = json.loads(text[start : end + 1] if start >= 0 else text)
        except ValueError:
            raise ValueError("tree search answer is not JSON with a node_list") from None
    items = answer.get("node_list") if isinstance(answer, Mapping) else None
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError("tree search answer has no node_list list")
    refs: list[Ref] = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise ValueError(f"node_list[{i}] must be a 'doc_id:node_id' string")
        doc, sep, node = item.rpartition(":")
        if not sep:
            if default_doc_id is None:
                raise ValueError(f"node_list[{i}] = {item!r} names no document and no default_doc_id given")
            doc, node = default_doc_id, item
        refs.append((doc, node))
    return refs


class ContextPilotPageIndex:
    """Registered PageIndex documents -> prompts; see the module docstring."""

    def __init__(
        self,
        pilot: cp.ContextPilot | None = None,
        *,
        system_instruction: str | None = None,
        chat_instruction: str | None = None,
        hint_template: str | None = None,
        max_documents: int = 1_000,
        max_sessions: int = 10_000,
        session_ttl: float | None = 3600.0,
        max_turns: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pilot = pilot if pilot is not None else cp.ContextPilot()
        self.system_instruction = DEFAULT_SYSTEM if system_instruction is None else system_instruction
        self.chat_instruction = CHAT_SYSTEM if chat_instruction is None else chat_instruction
        # the core chat session: history, dedup hints, restarts, bounds (validates the options)
        self.chat_store = cp.ChatStore(
            self.pilot,
            system_instruction=self.chat_instruction,
            header=SECTIONS_HEADER,
            # sections are long: a hint quoting the first line costs little
            hint_template=hint_template
            if hint_template is not None
            else self.pilot.hint_template or cp.DEFAULT_HINT,
            max_turns=max_turns,
            max_sessions=max_sessions,
            session_ttl=session_ttl,
            clock=clock,
        )
        self.hint_template = hint_template
        self.max_turns = max_turns
        self._lock = threading.Lock()
        self._docs = DocumentStore(max_documents)

    # -- documents -----------------------------------------------------------------

    def add_tree(self, doc_id: str, tree: Any) -> int:
        """Register a tree (``md_to_tree`` / ``get_tree`` output or a node list)."""
        with self._lock:
            return self._docs.add_tree(doc_id, tree)

    def add_pages(self, doc_id: str, pages: Any) -> int:
        """Register page contents (``get_page_content`` output)."""
        with self._lock:
            return self._docs.add_pages(doc_id, pages)

    def remove_document(self, doc_id: str) -> bool:
        with self._lock:
            return self._docs.remove(doc_id)

    def documents(self) -> list[str]:
        with self._lock:
            return self._docs.ids()

    def select(self, refs: Sequence[Ref]) -> Selection:
        """Blocks for ``refs`` in the given order, each node/page once."""
        with self._lock:
            return self._docs.select(refs)

    # -- prompts -----------------------------------------------------------------------

    def tree_search_messages(self, query: str, doc_ids: Sequence[str] | None = None) -> list[dict[str, str]]:
        """``[system, user]`` asking a model to pick nodes; parse its answer
        with :func:`parse_node_list`. Trees come first, ordered by the pilot."""
        _check_text(query, "query")
        with self._lock:
            ids = self._docs.ids() if doc_ids is None else list(doc_ids)
            blocks = [self._docs.structure_block(d) for d in ids]
        if blocks:
            blocks = self.pilot.reorder_detailed([blocks]).reordered[0]
        system = "\n\n".join([TREE_SEARCH_SYSTEM, *blocks])
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Question: {query}\n\n{TREE_SEARCH_FORMAT}"},
        ]

    def messages(self, query: str, refs: Sequence[Ref]) -> list[dict[str, str]]:
        """``[system, user]`` for one question: the sections reordered for
        the cache (and recorded as sent), retrieval order restated."""
        _check_text(query, "query")
        sel = self.select(refs)
        return self.pilot.optimize(sel.blocks, query, system_instruction=self.system_instruction)

    # -- chat sessions -------------------------------------------------------------------

    def chat(self, session_id: str) -> PageIndexChat:
        """The chat session ``session_id`` (created on first use)."""
        _check_text(session_id, "session_id")
        return PageIndexChat(self, self.chat_store.session(session_id))

    def end_session(self, session_id: str) -> bool:
        return self.chat_store.end(session_id)

    def sessions(self) -> list[str]:
        return self.chat_store.ids()


class PageIndexChat:
    """One session: ``messages(question, refs)`` -> model -> ``reply(answer)``."""

    def __init__(self, owner: ContextPilotPageIndex, session: cp.ChatSession) -> None:
        self._owner, self._session = owner, session

    @property
    def session_id(self) -> str:
        return self._session.session_id

    @property
    def history(self) -> list[dict[str, str]]:
        return self._session.history

    @property
    def restarts(self) -> int:
        return self._session.restarts

    @property
    def conversation_id(self) -> str | None:
        """The pilot's dedup conversation of the current history."""
        return self._session.conversation_id

    def messages(self, query: str, refs: Sequence[Ref]) -> list[dict[str, str]]:
        """The whole conversation so far plus this turn: the sections named
        by ``refs`` (each node/page once), repeats hinted, then ``query``."""
        _check_text(query, "query")
        return self._session.messages(self._owner.select(refs).blocks, query)

    def reply(self, answer: str) -> None:
        self._session.reply(answer)
