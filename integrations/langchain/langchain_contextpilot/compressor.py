"""``ContextPilotCompressor``: a ``BaseDocumentCompressor`` for
``ContextualCompressionRetriever`` (langchain-classic) and document pipelines.

It keeps every document and returns them in contextpilot's order (it does
not deduplicate: it cannot see the prompt; see ``ContextPilotChatPrompt``).
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.load.serializable import Serializable

from langchain_contextpilot._documents import STRICT_CONFIG, ReorderOnly, check_documents

__all__ = ["ContextPilotCompressor"]


class ContextPilotCompressor(ReorderOnly, BaseDocumentCompressor, Serializable):
    """Reorders documents; ``query`` is unused:
    the order depends on what was sent before, not on the question."""

    model_config = STRICT_CONFIG

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs = check_documents(documents, "documents")
        return self._plan_many([docs])[0]

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs = check_documents(documents, "documents")
        return (await self._aplan_many([docs]))[0]
