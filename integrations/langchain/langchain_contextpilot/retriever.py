"""``ContextPilotRetriever``: a ``BaseRetriever`` wrapping any retriever.

    retriever = ContextPilotRetriever(base_retriever=store.as_retriever(), k=4)
    docs = retriever.invoke("question", config={"configurable": {"conversation_id": "c1"}})

Native async: ``ainvoke`` awaits the base retriever's ``ainvoke`` and the
server (if any), never a thread. ``k`` (constructor or ``invoke(..., k=)``)
keeps the k most relevant documents, passed on to a base ``BaseRetriever``
as its ``k`` too. The conversation comes from ``invoke(...,
conversation_id=)``, the config's ``configurable`` (``conversation_id`` or
``session_id``), or the instance.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, RetrieverLike
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from pydantic import Field

from langchain_contextpilot._documents import (
    STRICT_CONFIG,
    ContextPilotOptions,
    check_documents,
    conversation_from_config,
)

__all__ = ["ContextPilotRetriever"]


class ContextPilotRetriever(ContextPilotOptions, BaseRetriever):
    """Retrieves with ``base_retriever``, then reorders (and optionally
    deduplicates) for prefix-cache reuse."""

    model_config = STRICT_CONFIG

    base_retriever: RetrieverLike
    k: int | None = Field(default=None, ge=1)

    def invoke(self, input: str, config: RunnableConfig | None = None, **kwargs: Any) -> list[Document]:
        return super().invoke(input, config, **_with_conversation(config, kwargs))

    async def ainvoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        return await super().ainvoke(input, config, **_with_conversation(config, kwargs))

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        conversation_id: str | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        k, base_kwargs = self._base_kwargs(k, kwargs)
        docs = self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()}, **base_kwargs)
        docs = check_documents(docs, "base_retriever result")[:k]
        return self._plan_many([docs], [conversation_id])[0]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        conversation_id: str | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        k, base_kwargs = self._base_kwargs(k, kwargs)
        docs = await self.base_retriever.ainvoke(
            query, config={"callbacks": run_manager.get_child()}, **base_kwargs
        )
        docs = check_documents(docs, "base_retriever result")[:k]
        return (await self._aplan_many([docs], [conversation_id]))[0]

    def _base_kwargs(self, k: int | None, kwargs: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
        k = self.k if k is None else k
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        # Only a BaseRetriever is known to accept (or quietly drop) extra kwargs.
        if not isinstance(self.base_retriever, BaseRetriever):
            return k, {}
        return k, ({**kwargs, "k": k} if k is not None else kwargs)


def _with_conversation(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    if kwargs.get("conversation_id") is None:
        cid = conversation_from_config(ensure_config(config))
        if cid is not None:
            return {**kwargs, "conversation_id": cid}
    return kwargs
