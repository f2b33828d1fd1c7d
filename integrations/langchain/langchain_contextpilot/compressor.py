"""``ContextPilotCompressor``: a ``BaseDocumentCompressor`` for
``ContextualCompressionRetriever`` (langchain-classic) and document pipelines.

It keeps every document (notes replace repeats when ``deduplicate``) and
returns them in contextpilot's order. The conversation comes from the
enclosing chain's ``configurable`` (``conversation_id`` or ``session_id``),
else the instance's.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables.config import ensure_config

from langchain_contextpilot._documents import (
    STRICT_CONFIG,
    ContextPilotOptions,
    check_documents,
    conversation_from_config,
)

__all__ = ["ContextPilotCompressor"]


class ContextPilotCompressor(ContextPilotOptions, BaseDocumentCompressor):
    """Reorders (and optionally deduplicates) documents; ``query`` is unused:
    the order depends on what was sent before, not on the question."""

    model_config = STRICT_CONFIG

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs = check_documents(documents, "documents")
        return self._plan_many([docs], [conversation_from_config(ensure_config())])[0]

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs = check_documents(documents, "documents")
        return (await self._aplan_many([docs], [conversation_from_config(ensure_config())]))[0]
