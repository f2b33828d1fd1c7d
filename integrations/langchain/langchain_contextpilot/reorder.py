"""``ContextPilotReorder``: an LCEL step from ``list[Document]`` to ``list[Document]``.

    chain = retriever | ContextPilotReorder() | format_docs | prompt | model

Sync, async and batch. ``batch``/``abatch`` plan all inputs in one call,
so documents shared across the batch line up as a common prefix; outputs
stay aligned with inputs. It does not deduplicate (it cannot see the
prompt): ``ContextPilotChatPrompt`` does, against the history it sends.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.documents import Document
from langchain_core.runnables import RunnableConfig, RunnableSerializable

from langchain_contextpilot._documents import STRICT_CONFIG, ReorderOnly, check_documents

__all__ = ["ContextPilotReorder"]


class ContextPilotReorder(ReorderOnly, RunnableSerializable[list[Document], list[Document]]):
    """Reorders retrieved documents for prefix-cache reuse; see the package README.

    Output: copies of the input documents in the order contextpilot chose,
    each with ``contextpilot_rank`` (its relevance rank) in its metadata.
    """

    model_config = STRICT_CONFIG

    def invoke(
        self, input: list[Document], config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        return self._call_with_config(self._invoke, input, config)

    async def ainvoke(
        self, input: list[Document], config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        return await self._acall_with_config(self._ainvoke, input, config)

    def batch(
        self,
        inputs: list[list[Document]],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        return self._batch_with_config(self._batch, inputs, config, return_exceptions=return_exceptions)

    async def abatch(
        self,
        inputs: list[list[Document]],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        return await self._abatch_with_config(
            self._abatch, inputs, config, return_exceptions=return_exceptions
        )

    # -- implementations (run inside LangChain's callback handling) -------------

    def _invoke(
        self, input: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> list[Document]:
        docs = check_documents(input)
        return self._plan_many([docs])[0]

    async def _ainvoke(
        self, input: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> list[Document]:
        docs = check_documents(input)
        return (await self._aplan_many([docs]))[0]

    def _batch(
        self, inputs: list[Any], run_manager: list[CallbackManagerForChainRun], config: list[RunnableConfig]
    ) -> list[list[Document] | Exception]:
        out, good, docs = _prepare(inputs)
        for i, res in zip(good, self._plan_many(docs) if good else []):
            out[i] = res
        return out

    async def _abatch(
        self,
        inputs: list[Any],
        run_manager: list[AsyncCallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[list[Document] | Exception]:
        out, good, docs = _prepare(inputs)
        for i, res in zip(good, await self._aplan_many(docs) if good else []):
            out[i] = res
        return out


def _prepare(inputs: list[Any]) -> tuple[list[Any], list[int], list[list[Document]]]:
    """Validate a batch: bad inputs become their exception in the output
    (LangChain raises the first unless ``return_exceptions``); the rest are
    planned together."""
    out: list[Any] = [None] * len(inputs)
    good: list[int] = []
    docs: list[list[Document]] = []
    for i, inp in enumerate(inputs):
        try:
            docs.append(check_documents(inp, f"inputs[{i}]"))
        except ValueError as e:
            out[i] = e
            continue
        good.append(i)
    return out, good, docs
