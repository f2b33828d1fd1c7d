"""mem0 ``Memory`` / ``AsyncMemory`` with prefix-cache-friendly prompts.

Two ways to prompt a model with memories, both built on the public
contextpilot API:

* **one-shot turns** (mem0's usual loop: a fresh ``[system, user]`` per
  question, memories in the system message): :meth:`search` returns mem0's
  results reordered by a :class:`contextpilot.ContextPilot` so memories the
  engine has already seen (earlier turns, in the order they were sent) come
  first and prompts share long prefixes; :meth:`build_messages` renders
  them and restates mem0's relevance order for the model.
* **chat sessions** (:meth:`chat`): contextpilot's append-only chat
  session (:class:`contextpilot.ChatStore`) fed with mem0's results. Each
  turn's memories go into that turn's user message, and a memory the
  history already holds is replaced by a short reference hint, so every
  prompt starts with the whole previous prompt plus the answer.

State: the pilot's live index (bounded by the pilot's own caps/TTL) and the
chat sessions (at most ``max_sessions``, dropped after ``session_ttl``
idle seconds, history restarted after ``max_turns`` turns).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import contextpilot as cp

__all__ = [
    "CHAT_HINT",
    "CHAT_SYSTEM",
    "DEFAULT_SYSTEM",
    "MEMORY_HEADER",
    "AsyncChatSession",
    "AsyncContextPilotMemory",
    "ChatSession",
    "ContextPilotMemory",
    "memory_text",
]

DEFAULT_SYSTEM = (
    "Answer the user's question using the memories below. Each memory starts with its label in "
    "square brackets."
)
CHAT_SYSTEM = (
    "You are a helpful assistant with long-term memory. A user turn may start with memories about the "
    "user, each labelled in square brackets; a memory already given earlier in this conversation is "
    "not repeated but referred to by its label."
)
MEMORY_HEADER = "Memories:"
#: what replaces a memory this chat session already sent (after its label);
#: memories are short, so the hint must be shorter still (fields: ref, preview, index)
CHAT_HINT = "(given earlier)"
_ENTITY_KEYS = ("user_id", "agent_id", "run_id")


def memory_text(item: Mapping[str, Any]) -> str:
    """Default block text of a mem0 result: its ``memory`` field."""
    return item["memory"]


def _check_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _results_of(res: Any) -> list[dict[str, Any]]:
    """The result list of a mem0 ``search`` answer (``{"results": [...]}``) or a plain list."""
    items = res.get("results") if isinstance(res, Mapping) else res
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError("expected mem0 search output: {'results': [ {...}, ... ]} or a list of results")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("memory"), str):
            raise ValueError(f"results[{i}] must be a mem0 result with a string 'memory' field")
        out.append(item)
    return out


class _Base:
    """What the sync and async wrappers share: everything but I/O."""

    def __init__(
        self,
        memory: Any,
        *,
        pilot: cp.ContextPilot | None = None,
        system_instruction: str | None = None,
        chat_instruction: str | None = None,
        hint_template: str = CHAT_HINT,
        format_memory: Callable[[Mapping[str, Any]], str] | None = None,
        max_sessions: int = 10_000,
        session_ttl: float | None = 3600.0,
        max_turns: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not hasattr(memory, "search"):
            raise ValueError("memory must be a mem0 Memory / AsyncMemory (an object with search())")
        self.memory = memory
        self.pilot = pilot if pilot is not None else cp.ContextPilot()
        self.system_instruction = DEFAULT_SYSTEM if system_instruction is None else system_instruction
        self.chat_instruction = CHAT_SYSTEM if chat_instruction is None else chat_instruction
        self.format_memory = format_memory or memory_text
        # the core chat session: history, dedup hints, restarts, bounds (validates the options)
        self.chat_store = cp.ChatStore(
            self.pilot,
            system_instruction=self.chat_instruction,
            header=MEMORY_HEADER,
            hint_template=hint_template,
            max_turns=max_turns,
            max_sessions=max_sessions,
            session_ttl=session_ttl,
            clock=clock,
        )
        self.hint_template = hint_template
        self.max_turns = max_turns

    def __getattr__(self, name: str) -> Any:
        # add / get_all / delete / history ... go straight to mem0
        memory = self.__dict__.get("memory")
        if memory is None:
            raise AttributeError(name)
        return getattr(memory, name)

    # -- one-shot turns ----------------------------------------------------------

    def _texts(self, items: Sequence[Mapping[str, Any]]) -> list[str]:
        texts = []
        for i, item in enumerate(items):
            text = self.format_memory(item)
            if not isinstance(text, str):
                raise ValueError(f"format_memory returned {type(text).__name__} for results[{i}]")
            texts.append(text)
        return texts

    def reorder(self, search_result: Any) -> dict[str, Any]:
        """mem0 search output with ``results`` in the pilot's order (recorded
        as sent), plus ``relevance_order`` (positions in ``results``, mem0's
        best first) and ``request_id`` (the pilot's id for engine hooks).
        O(k) besides the pilot's planning."""
        items = _results_of(search_result)
        out: dict[str, Any] = dict(search_result) if isinstance(search_result, Mapping) else {}
        if not items:
            out.update(results=[], relevance_order=[], request_id=None)
            return out
        texts = self._texts(items)
        plan = self.pilot.reorder_detailed([texts])
        where: dict[str, deque[int]] = defaultdict(deque)
        for i, t in enumerate(texts):
            where[t].append(i)
        picked = [where[t].popleft() for t in plan.reordered[0]]
        position = {orig: new for new, orig in enumerate(picked)}
        out.update(
            results=[items[i] for i in picked],
            relevance_order=[position[i] for i in range(len(items))],
            request_id=plan.request_ids[0] if plan.request_ids else None,
        )
        return out

    def build_messages(self, query: str, search_result: Mapping[str, Any]) -> list[dict[str, str]]:
        """``[system, user]`` for one question from :meth:`search` output:
        memories in its order, mem0's relevance order restated, query last."""
        _check_text(query, "query")
        items = _results_of(search_result)
        rel = search_result.get("relevance_order") if isinstance(search_result, Mapping) else None
        if rel is None:
            rel = list(range(len(items)))
        if sorted(rel) != list(range(len(items))):
            raise ValueError("relevance_order must be a permutation of the result positions")
        texts = self._texts(items)
        return cp.build_messages(
            texts, query, original=[texts[i] for i in rel], system_instruction=self.system_instruction
        )

    # -- chat sessions -------------------------------------------------------------

    def _session(self, session_id: str, filters: Any) -> cp.ChatSession:
        _check_text(session_id, "session_id")
        if not isinstance(filters, Mapping) or not any(k in filters for k in _ENTITY_KEYS):
            raise ValueError(
                "filters must be a dict naming user_id, agent_id or run_id, e.g. {'user_id': 'u1'}"
            )
        return self.chat_store.session(session_id)

    def end_session(self, session_id: str) -> bool:
        """Forget a chat session (history and dedup state); False if unknown."""
        return self.chat_store.end(session_id)

    def sessions(self) -> list[str]:
        """Ids of the live chat sessions (idle ones dropped first)."""
        return self.chat_store.ids()


class _SessionView:
    """A mem0 chat session: the core session plus what to search mem0 with."""

    def __init__(
        self, owner: _Base, session: cp.ChatSession, filters: Mapping[str, Any], search_kwargs: dict[str, Any]
    ) -> None:
        self._owner, self._session = owner, session
        self.filters, self.search_kwargs = dict(filters), search_kwargs

    @property
    def session_id(self) -> str:
        return self._session.session_id

    @property
    def history(self) -> list[dict[str, str]]:
        """User and assistant messages so far (copies), without the system message."""
        return self._session.history

    @property
    def restarts(self) -> int:
        """How many times the history was restarted after ``max_turns`` turns."""
        return self._session.restarts

    @property
    def conversation_id(self) -> str | None:
        """The pilot's dedup conversation of the current history."""
        return self._session.conversation_id

    def _turn(self, query: str, found: Any) -> list[dict[str, str]]:
        return self._session.messages(self._owner._texts(_results_of(found)), query)

    def _answered(self, answer: str) -> tuple[str, dict[str, Any]]:
        question = self._session.reply(answer)
        ids = {k: self.filters[k] for k in _ENTITY_KEYS if isinstance(self.filters.get(k), str)}
        return question, ids


class ChatSession(_SessionView):
    """``messages(question)`` -> send to the model -> ``reply(answer)``."""

    _owner: ContextPilotMemory

    def messages(self, query: str) -> list[dict[str, str]]:
        """Search mem0 and return the full message list for this turn."""
        _check_text(query, "query")
        return self._turn(query, self._owner.memory.search(query, filters=self.filters, **self.search_kwargs))

    def reply(self, answer: str, *, remember: bool = False, **add_kwargs: Any) -> Any:
        """Append the model's answer; ``remember=True`` also stores the
        exchange in mem0 (``memory.add``, ``add_kwargs`` passed on)."""
        question, ids = self._answered(answer)
        if remember:
            msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            return self._owner.memory.add(msgs, **ids, **add_kwargs)
        return None


class AsyncChatSession(_SessionView):
    """Async twin of :class:`ChatSession` (for ``AsyncMemory``)."""

    _owner: AsyncContextPilotMemory

    async def messages(self, query: str) -> list[dict[str, str]]:
        _check_text(query, "query")
        found = await self._owner.memory.search(query, filters=self.filters, **self.search_kwargs)
        return self._turn(query, found)

    async def reply(self, answer: str, *, remember: bool = False, **add_kwargs: Any) -> Any:
        question, ids = self._answered(answer)
        if remember:
            msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            return await self._owner.memory.add(msgs, **ids, **add_kwargs)
        return None


class ContextPilotMemory(_Base):
    """Wraps a mem0 ``Memory``; unknown attributes (``add``, ``get_all`` …)
    are mem0's own.

        cpm = ContextPilotMemory(Memory.from_config(cfg))
        found = cpm.search(question, filters={"user_id": "alice"}, top_k=10)
        messages = cpm.build_messages(question, found)
    """

    def search(
        self, query: str, *, filters: dict[str, Any], top_k: int = 20, **kwargs: Any
    ) -> dict[str, Any]:
        """mem0 ``search`` with the results reordered (see :meth:`reorder`)."""
        _check_text(query, "query")
        return self.reorder(self.memory.search(query, filters=filters, top_k=top_k, **kwargs))

    def messages(
        self, query: str, *, filters: dict[str, Any], top_k: int = 20, **kwargs: Any
    ) -> list[dict[str, str]]:
        """:meth:`search` then :meth:`build_messages`: one question's prompt."""
        return self.build_messages(query, self.search(query, filters=filters, top_k=top_k, **kwargs))

    def chat(
        self, session_id: str, *, filters: dict[str, Any], top_k: int = 10, **search_kwargs: Any
    ) -> ChatSession:
        """The chat session ``session_id`` (created on first use)."""
        session = self._session(session_id, filters)
        return ChatSession(self, session, filters, {"top_k": top_k, **search_kwargs})


class AsyncContextPilotMemory(_Base):
    """Wraps a mem0 ``AsyncMemory``; same API as :class:`ContextPilotMemory`
    with ``search`` / ``messages`` / session calls awaited."""

    async def search(
        self, query: str, *, filters: dict[str, Any], top_k: int = 20, **kwargs: Any
    ) -> dict[str, Any]:
        _check_text(query, "query")
        return self.reorder(await self.memory.search(query, filters=filters, top_k=top_k, **kwargs))

    async def messages(
        self, query: str, *, filters: dict[str, Any], top_k: int = 20, **kwargs: Any
    ) -> list[dict[str, str]]:
        return self.build_messages(query, await self.search(query, filters=filters, top_k=top_k, **kwargs))

    def chat(
        self, session_id: str, *, filters: dict[str, Any], top_k: int = 10, **search_kwargs: Any
    ) -> AsyncChatSession:
        session = self._session(session_id, filters)
        return AsyncChatSession(self, session, filters, {"top_k": top_k, **search_kwargs})
