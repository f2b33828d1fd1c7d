"""LangChain documents <-> planner items, and the options every component shares.

Block identity: ``Document.id`` when set, else the text (so a document
without an id is the same block contextpilot would make of its text).
Output documents are copies (``model_copy`` with a new metadata dict); the
caller's documents are never changed.

Metadata written on every output document:

* ``contextpilot_rank``: its relevance rank, the position it had in the
  input (0 = most relevant); the output order is the cache-friendly one;
* ``contextpilot_deduplicated``: ``True`` when its text was replaced by a
  note because this conversation already received it;
* ``contextpilot_request_id``: the live index's id of the request (local or
  stateful server), for engine eviction notices.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

import contextpilot as cp
from contextpilot.plugin_planner import Item, Placement, Planner, estimate_tokens

__all__ = [
    "DEFAULT_NOTE",
    "RANK_KEY",
    "DEDUP_KEY",
    "REQUEST_KEY",
    "ContextPilotOptions",
    "block_key",
    "check_documents",
    "conversation_from_config",
]

RANK_KEY = "contextpilot_rank"
DEDUP_KEY = "contextpilot_deduplicated"
REQUEST_KEY = "contextpilot_request_id"

#: Text of a repeated document; fields ``{preview}`` (its first non-empty
#: line) and ``{label}`` (its quoted id, or a hash label). Never its
#: position, so a note is the same text wherever it lands and stays cacheable.
DEFAULT_NOTE = '[Document already provided earlier in this conversation; it begins: "{preview}"]'


def block_key(doc: Document) -> int:
    """Stable identity of a document: its id if set, else its text."""
    if doc.id:
        return cp.stable_key("\x00document-id\x00" + doc.id)
    return cp.stable_key(doc.page_content)


def _label(doc: Document, key: int) -> str:
    return f'"{doc.id}"' if doc.id else f"doc-{key:016x}"[:12]


def _preview(text: str, limit: int = 80) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def check_documents(docs: Any, name: str = "input") -> list[Document]:
    """The documents as a list, or ``ValueError`` naming the bad position."""
    if isinstance(docs, (str, bytes, Mapping)) or not isinstance(docs, Sequence):
        raise ValueError(f"{name} must be a list of Documents, got {type(docs).__name__}")
    for i, d in enumerate(docs):
        if not isinstance(d, Document):
            raise ValueError(f"{name}[{i}] must be a Document, got {type(d).__name__}")
    return list(docs)


def conversation_from_config(config: Mapping[str, Any] | None) -> str | None:
    """``configurable.conversation_id`` (or ``session_id``, the key
    ``RunnableWithMessageHistory`` uses) of a RunnableConfig."""
    conf = (config or {}).get("configurable") or {}
    for name in ("conversation_id", "session_id"):
        cid = conf.get(name)
        if cid is not None:
            if not isinstance(cid, str) or not cid:
                raise ValueError(f"configurable.{name} must be a non-empty string, got {cid!r}")
            return cid
    return None


#: Components list it again: a base later in their MRO (LangChain's
#: ``Serializable``) would otherwise make unknown options silently ignored.
STRICT_CONFIG = ConfigDict(arbitrary_types_allowed=True, extra="forbid")


class ContextPilotOptions(BaseModel):
    """Options shared by the LangChain components, and their planning.

    ``pilot``: a ``contextpilot.ContextPilot`` to share between components
    (default: a fresh local one per component, sized by
    ``capacity_tokens``, the engine's KV cache in tokens, if given);
    ``server_url``: use a contextpilot server instead (``api_key``,
    ``timeout`` for it);
    ``deduplicate``: replace documents the conversation already received
    by a note; ``conversation_id``: the default conversation (else one per
    component instance; a call's ``configurable.conversation_id`` or
    ``session_id`` wins); ``note_template``: the note's text.
    """

    model_config = STRICT_CONFIG

    pilot: Any = Field(default=None, exclude=True, repr=False)
    server_url: str | None = None
    api_key: str | None = Field(default=None, exclude=True, repr=False)
    timeout: float = Field(default=30.0, gt=0)
    capacity_tokens: float | None = Field(default=None, gt=0)
    deduplicate: bool = False
    conversation_id: str | None = Field(default=None, min_length=1)
    note_template: str = DEFAULT_NOTE

    _planner: Planner = PrivateAttr()
    _own_conversation: str = PrivateAttr(default_factory=lambda: f"langchain-{uuid.uuid4().hex}")

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        try:
            self.note_template.format(label="x", preview="y")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"note_template may use only {{label}} and {{preview}}: {e!r}") from None
        self._planner = Planner(
            pilot=self.pilot,
            server_url=self.server_url,
            api_key=self.api_key,
            timeout=self.timeout,
            capacity_tokens=self.capacity_tokens,
        )
        # the instance in use, so callers can read its stats or send evictions
        self.pilot = self._planner.pilot

    def _conversation(self, cid: str | None) -> str:
        return cid or self.conversation_id or self._own_conversation

    def _items(self, docs: Sequence[Document]) -> list[Item]:
        items = []
        for d in docs:
            key = block_key(d)
            if self.deduplicate:
                note = self._note(d, key)
                items.append(
                    Item(key, estimate_tokens(d.page_content), cp.stable_key(note), estimate_tokens(note))
                )
            else:
                items.append(Item(key, estimate_tokens(d.page_content)))
        return items

    def _note(self, doc: Document, key: int) -> str:
        return self.note_template.format(label=_label(doc, key), preview=_preview(doc.page_content))

    def _apply(self, docs: Sequence[Document], placement: Placement) -> list[Document]:
        out = []
        for p in placement.order:
            d = docs[p]
            meta = {**d.metadata, RANK_KEY: p, DEDUP_KEY: p in placement.noted}
            if placement.request_id is not None:
                meta[REQUEST_KEY] = placement.request_id
            update: dict[str, Any] = {"metadata": meta}
            if p in placement.noted:
                update["page_content"] = self._note(d, block_key(d))
            out.append(d.model_copy(update=update))
        return out

    def _plan_many(
        self, batches: Sequence[Sequence[Document]], cids: Sequence[str | None]
    ) -> list[list[Document]]:
        conv = [self._conversation(c) for c in cids]
        placements = self._planner.plan([self._items(b) for b in batches], conv, self.deduplicate)
        return [self._apply(b, p) for b, p in zip(batches, placements)]

    async def _aplan_many(
        self, batches: Sequence[Sequence[Document]], cids: Sequence[str | None]
    ) -> list[list[Document]]:
        conv = [self._conversation(c) for c in cids]
        placements = await self._planner.aplan([self._items(b) for b in batches], conv, self.deduplicate)
        return [self._apply(b, p) for b, p in zip(batches, placements)]

    def close(self) -> None:
        """Close the server connection, if any."""
        self._planner.close()
