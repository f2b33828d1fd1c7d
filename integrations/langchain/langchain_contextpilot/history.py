"""``ContextPilotChatHistory``: a ``BaseChatMessageHistory`` that keeps each
turn as the model received it, documents included.

LangChain's ``RunnableWithMessageHistory`` stores the *question* as the
human message, not the prompt: the documents of earlier turns are gone, so
nothing can refer back to them. Wrap the session's history in this class and
``ContextPilotChatPrompt`` (running inside the same chain) hands it each
turn's rendered message; when ``RunnableWithMessageHistory`` then adds the
question, the rendered message is stored instead. Later turns' prompts carry
those documents in their history, and repeats become notes pointing at them.

Any ``BaseChatMessageHistory`` can be wrapped (in memory, Redis, SQL ...);
everything else passes through. Bounded: at most ``max_pending`` staged turns
(oldest dropped; a dropped one is stored as the plain question, which is
safe: later notes are checked against what the history really holds).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from langchain_core.chat_history import BaseChatMessageHistory, InMemoryChatMessageHistory
from langchain_core.messages import BaseMessage, HumanMessage

__all__ = ["ContextPilotChatHistory"]


class ContextPilotChatHistory(BaseChatMessageHistory):
    """Wraps ``history`` (default: a fresh ``InMemoryChatMessageHistory``)."""

    def __init__(self, history: BaseChatMessageHistory | None = None, *, max_pending: int = 64) -> None:
        if history is not None and not isinstance(history, BaseChatMessageHistory):
            raise ValueError(f"history must be a BaseChatMessageHistory, got {type(history).__name__}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
        self.history = history if history is not None else InMemoryChatMessageHistory()
        self.max_pending = max_pending
        self._pending: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return self.history.messages

    def stage(self, question: str, content: str) -> None:
        """The next human message equal to ``question`` is stored as ``content``."""
        with self._lock:
            self._pending[question] = content
            self._pending.move_to_end(question)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)

    def _swap(self, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        out = []
        with self._lock:
            for m in messages:
                if isinstance(m, HumanMessage) and isinstance(m.content, str) and m.content in self._pending:
                    m = HumanMessage(content=self._pending.pop(m.content), id=m.id)
                out.append(m)
        return out

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        self.history.add_messages(self._swap(messages))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        await self.history.aadd_messages(self._swap(messages))

    async def aget_messages(self) -> list[BaseMessage]:
        return await self.history.aget_messages()

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
        self.history.clear()

    async def aclear(self) -> None:
        with self._lock:
            self._pending.clear()
        await self.history.aclear()
