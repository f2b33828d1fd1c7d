"""``ContextPilotRetriever``: a ``BaseRetriever`` wrapping any retriever.

    retriever = ContextPilotRetriever(base_retriever=store.as_retriever(), k=4)
    docs = retriever.invoke("question")

Native async: ``ainvoke`` awaits the base retriever's ``ainvoke`` and the
server (if any), never a thread. ``k`` (constructor or ``invoke(..., k=)``)
keeps the k most relevant documents, passed on to a base ``BaseRetriever``
as its ``k`` too. It does not deduplicate (it cannot see the prompt).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, RetrieverLike
from pydantic import Field

from langchain_contextpilot._documents import STRICT_CONFIG, ReorderOnly, check_documents

__all__ = ["ContextPilotRetriever"]


class ContextPilotRetriever(ReorderOnly, BaseRetriever):
    """Retrieves with ``base_retriever``, then reorders for prefix-cache reuse."""

    model_config = STRICT_CONFIG

    base_retriever: RetrieverLike
    k: int | None = Field(default=None, ge=1)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        k, base_kwargs = self._base_kwargs(k, kwargs)
        docs = self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()}, **base_kwargs)
        docs = check_documents(docs, "base_retriever result")[:k]
        return self._plan_many([docs])[0]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        k, base_kwargs = self._base_kwargs(k, kwargs)
        docs = await self.base_retriever.ainvoke(
            query, config={"callbacks": run_manager.get_child()}, **base_kwargs
        )
        docs = check_documents(docs, "base_retriever result")[:k]
        return (await self._aplan_many([docs]))[0]

    def _base_kwargs(self, k: int | None, kwargs: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
        k = self.k if k is None else k
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        # Only a BaseRetriever is known to accept (or quietly drop) extra kwargs.
        if not isinstance(self.base_retriever, BaseRetriever):
            return k, {}
        return k, ({**kwargs, "k": k} if k is not None else kwargs)
