"""LangChain documents <-> planner items, and the options every component shares.

Block identity: ``Document.id`` when set, else the text (so a document
without an id is the same block contextpilot would make of its text).
Output documents are copies (``model_copy`` with a new metadata dict); the
caller's documents are never changed.

Metadata written on every output document:

* ``contextpilot_rank``: its relevance rank, the position it had in the
  input (0 = most relevant); the output order is the cache-friendly one;
* ``contextpilot_request_id``: the live index's id of the request (local or
  stateful server), for engine eviction notices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.utils import from_env, secret_from_env
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from contextpilot.plugins import (
    Item,
    Placement,
    Planner,
    clean_label,
    estimate_tokens,
    make_planner,
    stable_key,
)

__all__ = [
    "RANK_KEY",
    "REQUEST_KEY",
    "ContextPilotOptions",
    "block_key",
    "check_documents",
    "label_of",
]

RANK_KEY = "contextpilot_rank"
REQUEST_KEY = "contextpilot_request_id"

_NO_DEDUP = (
    "{name} does not deduplicate: it cannot know which messages the model receives, so a note could "
    "point at a document the model never sees. Use ContextPilotChatPrompt, which renders each turn "
    "against the history it puts in the prompt (notes only for text that history holds)."
)


def block_key(doc: Document) -> int:
    """Stable identity of a document: its id if set, else its text."""
    if doc.id:
        return stable_key("\x00document-id\x00" + doc.id)
    return stable_key(doc.page_content)


def label_of(doc: Document) -> str:
    """The label a document carries in a prompt: its id (``]`` and newlines
    made ``_``), else a short content hash."""
    return clean_label(doc.id) if doc.id else f"doc-{stable_key(doc.page_content):016x}"[:12]


def check_documents(docs: Any, name: str = "input") -> list[Document]:
    """The documents as a list, or ``ValueError`` naming the bad position."""
    if isinstance(docs, (str, bytes, Mapping)) or not isinstance(docs, Sequence):
        raise ValueError(f"{name} must be a list of Documents, got {type(docs).__name__}")
    for i, d in enumerate(docs):
        if not isinstance(d, Document):
            raise ValueError(f"{name}[{i}] must be a Document, got {type(d).__name__}")
    return list(docs)


#: Components list it again: a base later in their MRO (LangChain's
#: ``Serializable``) would otherwise make unknown options silently ignored.
STRICT_CONFIG = ConfigDict(arbitrary_types_allowed=True, extra="forbid")


class ContextPilotOptions(BaseModel):
    """Options shared by the LangChain components, and their planning.

    ``pilot``: a ``contextpilot.ContextPilot`` to share between components
    (default: a fresh local one per component, sized by
    ``capacity_tokens``, the engine's KV cache in tokens, if given);
    ``server_url``: use a contextpilot server instead (default: the
    ``CONTEXTPILOT_URL`` environment variable; ``api_key`` defaults to
    ``CONTEXTPILOT_API_KEY``; ``timeout`` in seconds).
    """

    model_config = STRICT_CONFIG

    pilot: Any = Field(default=None, exclude=True, repr=False)
    server_url: str | None = Field(default_factory=from_env("CONTEXTPILOT_URL", default=None))
    api_key: SecretStr | None = Field(default_factory=secret_from_env("CONTEXTPILOT_API_KEY", default=None))
    timeout: float = Field(default=30.0, gt=0)
    capacity_tokens: float | None = Field(default=None, gt=0)

    _planner: Planner = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._planner = make_planner(self)
        # the instance in use, so callers can read its stats or send evictions
        self.pilot = self._planner.pilot

    # -- LangChain serialisation (dumpd / load): options only, never the pilot --

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["langchain_contextpilot"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "CONTEXTPILOT_API_KEY"}

    # -------------------------------------------------------------------------------

    def _items(self, docs: Sequence[Document]) -> list[Item]:
        return [Item(block_key(d), estimate_tokens(d.page_content)) for d in docs]

    def _apply(self, docs: Sequence[Document], placement: Placement) -> list[Document]:
        out = []
        for p in placement.order:
            d = docs[p]
            meta = {**d.metadata, RANK_KEY: p}
            if placement.request_id is not None:
                meta[REQUEST_KEY] = placement.request_id
            out.append(d.model_copy(update={"metadata": meta}))
        return out

    def _plan_many(self, batches: Sequence[Sequence[Document]]) -> list[list[Document]]:
        placements = self._planner.plan([self._items(b) for b in batches], [None] * len(batches), False)
        return [self._apply(b, p) for b, p in zip(batches, placements)]

    async def _aplan_many(self, batches: Sequence[Sequence[Document]]) -> list[list[Document]]:
        placements = await self._planner.aplan(
            [self._items(b) for b in batches], [None] * len(batches), False
        )
        return [self._apply(b, p) for b, p in zip(batches, placements)]

    def close(self) -> None:
        """Close the server connection, if any."""
        self._planner.close()


class ReorderOnly(ContextPilotOptions):
    """Options of the components that only reorder: ``deduplicate=True`` is
    refused with the reason (they cannot see the prompt)."""

    deduplicate: bool = Field(default=False, exclude=True)

    @field_validator("deduplicate")
    @classmethod
    def _refuse(cls, value: bool) -> bool:
        if value:
            raise ValueError(_NO_DEDUP.format(name=cls.__name__))
        return value
