"""``ContextPilotChatPrompt``: the chat prompt of a retrieval turn, with dedup
that only points at text the prompt carries.

    prompt = ContextPilotChatPrompt()
    chain = {"context": itemgetter("question") | retriever,
             "question": itemgetter("question"), "history": itemgetter("history")} | prompt | model

Input: a dict with the question (``question_key``), this turn's documents
(``context_key``, most relevant first) and, optionally, the conversation so
far (``history_key``, a list of messages, e.g. what
``RunnableWithMessageHistory(..., history_messages_key="history")`` fills).
Output: a ``ChatPromptValue``: ``[system?] + history + [human]``, the human
message holding the documents, then the relevance order, then the question.

Dedup (``deduplicate=True``, the default): a document whose block
(``[label]`` line + text) is in a history message of *this* prompt, or
earlier in this turn, becomes a note ``[label] (given earlier ...)``. The
check is by content on the very history it emits, so whatever keeps the
history (trimmed, windowed, a plain question/answer store) no note can point
at text the model does not receive; a note in a kept history message whose
full copy was trimmed away is shown as ``[label] (no longer in this
conversation)`` in the prompt. Pipe the output straight into the chat
model: anything that drops messages in between voids that guarantee.

For notes to happen at all the history must hold earlier turns' documents:
wrap the session history in ``ContextPilotChatHistory``, which stores each
turn as rendered here. With a history that keeps only questions and answers
every document is simply sent in full.

Order: a turn with an empty history (its documents follow only the system
message, so other conversations can share them) is ordered by contextpilot
against what was sent before; later turns follow their own history, which
nothing else shares, and keep the relevance order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import field_validator

from contextpilot.plugins import (
    DEFAULT_NOTE,
    History,
    Placement,
    check_note_template,
    render_turn,
    settle_history,
)
from langchain_contextpilot._documents import STRICT_CONFIG, ContextPilotOptions, check_documents, label_of
from langchain_contextpilot.history import ContextPilotChatHistory

__all__ = ["DEFAULT_HEADER", "DEFAULT_SYSTEM", "ContextPilotChatPrompt"]

DEFAULT_SYSTEM = (
    "Answer the user's questions using the documents given in their messages. Each document starts with "
    "its label in square brackets; a document already given earlier in this conversation is not repeated "
    "but referred to by its label."
)
DEFAULT_HEADER = "Documents:"


class ContextPilotChatPrompt(ContextPilotOptions, RunnableSerializable[dict[str, Any], ChatPromptValue]):
    """Chat prompt with cache-friendly order and history-checked dedup; see the module docstring."""

    model_config = STRICT_CONFIG

    system_message: str = DEFAULT_SYSTEM
    header: str = DEFAULT_HEADER
    question_key: str = "question"
    context_key: str = "context"
    history_key: str = "history"
    deduplicate: bool = True
    note_template: str = DEFAULT_NOTE

    @field_validator("note_template")
    @classmethod
    def _check_note(cls, value: str) -> str:
        return check_note_template(value)

    @property
    def InputType(self) -> type:  # noqa: N802 (LangChain's name)
        return dict

    @property
    def OutputType(self) -> type:  # noqa: N802
        return ChatPromptValue

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> ChatPromptValue:
        return self._call_with_config(self._invoke, input, config)

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> ChatPromptValue:
        return await self._acall_with_config(self._ainvoke, input, config)

    def _invoke(
        self, input: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> ChatPromptValue:
        question, docs, history = self._read(input)
        placement = (
            self._planner.plan([self._items(docs)], [None], False)[0] if docs and not history else None
        )
        return self._render(question, docs, history, placement, config)

    async def _ainvoke(
        self, input: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> ChatPromptValue:
        question, docs, history = self._read(input)
        placement = None
        if docs and not history:
            placement = (await self._planner.aplan([self._items(docs)], [None], False))[0]
        return self._render(question, docs, history, placement, config)

    def _read(self, input: Any) -> tuple[str, list[Document], list[BaseMessage]]:
        if not isinstance(input, Mapping):
            raise ValueError(f"input must be a dict with {self.question_key!r} and {self.context_key!r}")
        question = input.get(self.question_key)
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"input[{self.question_key!r}] must be a non-empty string")
        if self.context_key not in input:
            raise ValueError(f"input has no {self.context_key!r} (this turn's documents)")
        docs = check_documents(input[self.context_key], f"input[{self.context_key!r}]")
        history = input.get(self.history_key) or []
        if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
            raise ValueError(f"input[{self.history_key!r}] must be a list of messages")
        for i, m in enumerate(history):
            if not isinstance(m, BaseMessage):
                raise ValueError(
                    f"input[{self.history_key!r}][{i}] must be a message, got {type(m).__name__}"
                )
        return question, docs, list(history)

    def _render(
        self,
        question: str,
        docs: list[Document],
        history: list[BaseMessage],
        placement: Placement | None,
        config: RunnableConfig,
    ) -> ChatPromptValue:
        order = placement.order if placement is not None else list(range(len(docs)))
        labels = [label_of(d) for d in docs]
        tail = question
        if docs:
            seen = History([m.text for m in history], self.note_template)
            turn = render_turn(
                [labels[p] for p in order],
                [docs[p].page_content for p in order],
                seen,
                self.note_template,
                dedup=self.deduplicate,
            )
            ranked = ", ".join(f"[{lab}]" for lab in dict.fromkeys(labels))
            body = [self.header] if self.header else []
            tail = "\n\n".join(
                [*body, turn.content, f"Documents by relevance, most relevant first: {ranked}", question]
            )
        # a trimmed history can keep a turn whose notes point into dropped turns
        texts = [m.text for m in history]
        settled = settle_history(texts, tail, self.note_template) if self.deduplicate else texts
        history = [
            m if new is old else m.model_copy(update={"content": new})
            for m, old, new in zip(history, texts, settled)
        ]
        target = (config.get("configurable") or {}).get("message_history")
        if isinstance(target, ContextPilotChatHistory):
            target.stage(question, tail)
        head: list[BaseMessage] = [SystemMessage(self.system_message)] if self.system_message else []
        return ChatPromptValue(messages=[*head, *history, HumanMessage(tail)])
