"""Append-only chat sessions: multi-turn dedup that never points at nothing.

A :class:`ChatSession` keeps one conversation's history (user and assistant
messages) and builds each turn's prompt as *the whole history plus this
turn*, so every prompt starts with the previous prompt and its answer: the
engine's prefix cache holds all of it and computes only the new turn.

Each turn's documents go into that turn's user message (after an optional
header), labelled by content (:func:`contextpilot.core.prompt.render_documents`,
so a document renders identically every time), followed by the relevance
order (the caller's order, most relevant first) and the question. A document
the history already holds is replaced by a short reference hint (the pilot's
:class:`~contextpilot.core.dedup.DedupLedger`, template configurable).

**Invariant (no dangling hints).** A document is hinted only if its full
text is in an earlier message of the history returned with the hint (or
earlier in the same user message), because:

* each history *generation* has its own dedup conversation (a fresh
  ``chat-<uuid>`` id): after ``max_turns`` turns the history restarts empty
  and that conversation is forgotten; a session dropped by the bounds (cap,
  idle TTL, :meth:`ChatStore.end`) forgets it too;
* the dedup store only ever forgets (its own caps and TTL): a forgotten
  document is sent in full again, never hinted;
* :meth:`ChatSession.messages` always returns the whole history.

The caller must send exactly what :meth:`ChatSession.messages` returns and
report the model's answer with :meth:`ChatSession.reply`.

Cache order: the documents of a history's first turn follow only the fixed
system instruction and header, so they can share a prefix with other
sessions' first turns: the pilot orders them against its live index. Later
turns follow this session's own history, which nothing else shares, so
their documents keep the caller's (relevance) order. The live index then
learns what was really sent: the session's whole block sequence (documents
or their hints, each turn's question, each answer), as one request per turn.
The system instruction and header are not blocks, as with
:meth:`~contextpilot.core.pilot.ContextPilot.optimize` (a shared prefix
shifts every prompt alike).

Modules: this one holds the store (sessions, bounds, locking) and the
session handles; :mod:`contextpilot.core.chat_turn` builds a turn and
records its answer; :mod:`contextpilot.core.chat_state` holds one
session's state and its snapshot rows.

Bounds: at most ``max_sessions`` sessions (least recently used dropped),
none idle longer than ``session_ttl`` seconds, at most ``max_turns`` user
turns per history. Thread-safe: one lock per store (taken before the
pilot's). Cost per turn: O(documents + blocks in the history) for the index
record, O(history messages) to copy the returned prompt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from contextpilot.core.chat_state import ChatState, parse_rows
from contextpilot.core.chat_turn import ChatBackend, close_turn, open_turn
from contextpilot.core.dedup import check_hint_template
from contextpilot.core.lru import BoundedLRU
from contextpilot.core.prompt import check_docs

__all__ = [
    "DEFAULT_CHAT_HEADER",
    "DEFAULT_CHAT_HINT",
    "DEFAULT_CHAT_SYSTEM",
    "ChatBackend",
    "ChatSession",
    "ChatStore",
]

log = logging.getLogger("contextpilot")

DEFAULT_CHAT_SYSTEM = (
    "Answer the user's questions using the documents given in their messages. Each document starts "
    "with its label in square brackets; a document already given earlier in this conversation is not "
    "repeated but referred to by its label."
)
DEFAULT_CHAT_HEADER = "Documents:"
#: what replaces a document the history already holds, after its label. Short
#: on purpose: the label already names the full copy above it, and a longer
#: hint (a quoted preview) can cost as many tokens as a short memory
DEFAULT_CHAT_HINT = "(given earlier)"


def _check_max_turns(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_turns must be an int >= 1, got {value!r}")
    return value


def _check_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    return value


class ChatStore:
    """The chat sessions of one pilot, bounded; see the module docstring.

    ``system_instruction``: the system message of new sessions (``""``: no
    system message); ``header``: the line before each turn's documents
    (``""``: none); ``hint_template``: what replaces a repeated document
    (fields ``{ref}``, ``{preview}``, ``{index}``; ``None``: the pilot's
    ``hint_template`` if it has one, else :data:`DEFAULT_CHAT_HINT`);
    ``max_turns``: default history length of new sessions.
    """

    def __init__(
        self,
        pilot: ChatBackend,
        *,
        system_instruction: str | None = None,
        header: str = DEFAULT_CHAT_HEADER,
        hint_template: str | None = None,
        max_turns: int = 64,
        max_sessions: int = 10_000,
        session_ttl: float | None = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pilot = pilot
        self.system_instruction = _check_str(
            DEFAULT_CHAT_SYSTEM if system_instruction is None else system_instruction, "system_instruction"
        )
        self.header = _check_str(header, "header")
        if hint_template is None:
            hint_template = pilot.hint_template or DEFAULT_CHAT_HINT
        self.hint_template = check_hint_template(hint_template)
        self.max_turns = _check_max_turns(max_turns)
        self._lock = threading.RLock()
        self._sessions: BoundedLRU[ChatState] = BoundedLRU(max_sessions, session_ttl, self._release, clock)

    # -- sessions ------------------------------------------------------------------

    def _release(self, state: ChatState) -> None:
        self.pilot.end_conversation(state.conversation_id)

    def session(
        self, session_id: str, *, system_instruction: str | None = None, max_turns: int | None = None
    ) -> ChatSession:
        """The session ``session_id``, created on first use.

        ``None`` settings keep the live session's (or the store's defaults
        for a new one); a different value for a live session is an error,
        since changing the system message would break every later prefix.
        """
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        if system_instruction is not None:
            _check_str(system_instruction, "system_instruction")
        if max_turns is not None:
            _check_max_turns(max_turns)
        with self._lock:
            state = self._live(session_id, use=True)
            if state is not None:
                for name, want, have in (
                    ("system_instruction", system_instruction, state.system),
                    ("max_turns", max_turns, state.max_turns),
                ):
                    if want is not None and want != have:
                        raise ValueError(
                            f"chat session {session_id!r} is live with another {name}; "
                            "end it first to change it"
                        )
            else:
                state = self._sessions.get(
                    session_id, lambda: self._create(session_id, system_instruction, max_turns)
                )
            return ChatSession(self, session_id, state.system, state.max_turns)

    def _create(self, session_id: str, system: str | None, max_turns: int | None) -> ChatState:
        state = ChatState(
            session_id,
            self.system_instruction if system is None else system,
            self.max_turns if max_turns is None else max_turns,
        )
        return state

    def _live(self, session_id: str, *, use: bool, create: tuple[str, int] | None = None) -> ChatState | None:
        """The live state of ``session_id``; ``use`` marks it used (LRU and
        idle time); a dropped session is recreated empty, with the settings
        ``create`` = (system instruction, max_turns), when given. Caller
        holds the lock."""
        self._sessions.expire()
        state = self._sessions.peek(session_id)
        if state is None and create:
            log.info(
                "chat session %r was dropped (ended, evicted or idle); starting a new history", session_id
            )
        elif state is None or not use:
            return state
        settings = create or (None, None)
        return self._sessions.get(session_id, lambda: self._create(session_id, *settings))

    def ids(self) -> list[str]:
        """Ids of the live sessions, least recently used first (idle ones dropped first)."""
        with self._lock:
            self._sessions.expire()
            return self._sessions.ids()

    def info(self) -> list[dict[str, Any]]:
        """One entry per live session: id, turns, restarts, messages, pending."""
        with self._lock:
            self._sessions.expire()
            return [s.describe() for _, s, _ in self._sessions.entries()]

    def describe(self, session_id: str) -> dict[str, Any] | None:
        """:meth:`info`'s entry for one session (not marked used), or None
        if it is not live. O(1) plus expiry."""
        with self._lock:
            state = self._live(session_id, use=False)
            return None if state is None else state.describe()

    def hold(self) -> threading.RLock:
        """The store's lock, for a caller that must capture or replace the
        sessions together with the pilot's state (take it before the pilot's)."""
        return self._lock

    def export(self) -> list[dict[str, Any]]:
        """Every live session as JSON-ready data, least recently used first:
        settings, dedup conversation id, history (message texts: unlike the
        other stores' exports this holds document text), pending question,
        counters, index keys and tokens, idle seconds. O(history)."""
        with self._lock:
            self._sessions.expire()
            now = self._sessions.clock()
            return [s.to_row(now - last) for _, s, last in self._sessions.entries()]

    def parse(self, rows: Any, *, downtime: float = 0.0) -> list[tuple[str, ChatState, float]]:
        """Check :meth:`export` rows into ``(id, state, last_used)`` entries
        for :meth:`replace`; a bad row raises
        :class:`~contextpilot.core.persist.SnapshotError` naming it. O(rows)."""
        return parse_rows(rows, self._sessions.clock(), downtime)

    def replace(self, entries: list[tuple[str, ChatState, float]]) -> None:
        """Replace every session by :meth:`parse` output (e.g. on restore,
        together with the pilot's dedup conversations, which the old
        sessions' are not released into); bounds apply right after."""
        with self._lock:
            fresh: BoundedLRU[ChatState] = BoundedLRU(
                self._sessions.max_items, self._sessions.ttl, self._release, self._sessions.clock
            )
            for sid, state, last in entries:
                fresh.put(sid, state, last)
            self._sessions = fresh
            fresh.trim()
            fresh.expire()

    def end(self, session_id: str) -> bool:
        """Forget one session (history and dedup state); False if unknown."""
        with self._lock:
            return self._sessions.drop(session_id)

    def clear(self) -> None:
        """Forget every session."""
        with self._lock:
            self._sessions.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            self._sessions.expire()
            return session_id in self._sessions

    # -- turns -----------------------------------------------------------------------

    def _messages(
        self, session_id: str, settings: tuple[str, int], docs: Any, query: Any
    ) -> list[dict[str, str]]:
        docs = check_docs(docs)
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        with self._lock:
            s = self._live(session_id, use=True, create=settings)
            assert s is not None
            return open_turn(self.pilot, s, docs, query, self.header, self.hint_template)

    def _reply(self, session_id: str, answer: Any) -> str:
        _check_str(answer, "answer")
        with self._lock:
            s = self._live(session_id, use=True)
            if s is None:
                raise ValueError(
                    f"no question awaits an answer in chat session {session_id!r}: call messages() first"
                )
            return close_turn(self.pilot, s, answer)


class ChatSession:
    """A handle on one chat session: ``messages(docs, query)`` -> send to the
    model -> ``reply(answer)``. The state lives in the :class:`ChatStore`;
    if the session was dropped (ended, evicted, idle), the next
    :meth:`messages` starts a new, empty history under the same id."""

    __slots__ = ("_settings", "_store", "session_id")

    def __init__(self, store: ChatStore, session_id: str, system: str, max_turns: int) -> None:
        self._store = store
        self.session_id = session_id
        self._settings = (system, max_turns)

    def __repr__(self) -> str:
        return f"ChatSession({self.session_id!r})"

    def messages(self, docs: Sequence[str], query: str) -> list[dict[str, str]]:
        """The whole conversation so far plus this turn, ready for an
        OpenAI-compatible chat API: ``[system?, user, assistant, …, user]``.
        ``docs``: this turn's documents, most relevant first (may be empty)."""
        return self._store._messages(self.session_id, self._settings, docs, query)

    def reply(self, answer: str) -> str:
        """Append the model's answer to the pending question; returns that question."""
        return self._store._reply(self.session_id, answer)

    def _get(self, attr: str, default: Any) -> Any:
        with self._store._lock:
            s = self._store._live(self.session_id, use=False)
            return default if s is None else getattr(s, attr)

    @property
    def history(self) -> list[dict[str, str]]:
        """User and assistant messages of the current history (copies), without the system message."""
        with self._store._lock:
            s = self._store._live(self.session_id, use=False)
            return [] if s is None else [dict(m) for m in s.history]

    @property
    def restarts(self) -> int:
        """How many times the history restarted after ``max_turns`` turns."""
        return self._get("restarts", 0)

    @property
    def turns(self) -> int:
        """User turns in the current history."""
        return self._get("turns", 0)

    @property
    def pending(self) -> str | None:
        """The question awaiting its answer, if any."""
        return self._get("pending", None)

    @property
    def max_turns(self) -> int:
        return self._settings[1]

    @property
    def system_instruction(self) -> str:
        return self._settings[0]

    @property
    def conversation_id(self) -> str | None:
        """The pilot's dedup conversation of the current history (``None`` once dropped)."""
        return self._get("conversation_id", None)

    @property
    def last_request_id(self) -> str | None:
        """The live index's id of the last turn (pass it as ``rid`` to the
        engine so eviction hooks can report it); ``None`` when stateless."""
        return self._get("last_request_id", None)

    @property
    def alive(self) -> bool:
        return self.session_id in self._store
