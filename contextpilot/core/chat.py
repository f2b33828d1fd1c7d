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
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from contextpilot.core.blocks import Block
from contextpilot.core.dedup import DedupResult, check_hint_template
from contextpilot.core.lru import BoundedLRU
from contextpilot.core.persist import SnapshotError, as_dict, as_int, as_list, as_seconds
from contextpilot.core.prompt import check_docs, relevance_line, render_documents

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


class ChatBackend(Protocol):
    """What a :class:`ChatStore` needs from its pilot
    (:class:`contextpilot.core.pilot.ContextPilot` implements it); a
    protocol, so this module imports nothing above it."""

    hint_template: str | None

    def plan_one(self, docs: Sequence[Block]) -> list[Block]: ...

    def measure(self, blocks: Sequence[Block]) -> tuple[list[int], list[int]]: ...

    def record_sent(self, keys: list[int], tokens: list[int]) -> tuple[str, int] | None: ...

    def end_conversation(self, conversation_id: str) -> bool: ...

    def deduplicate(
        self, contexts: Sequence[Sequence[Block]], conversation_id: str, hint_template: str | None = None
    ) -> list[DedupResult]: ...


def _row_str(row: dict[str, Any], name: str, where: str, optional: bool = False) -> Any:
    """``row[name]`` if it is a string (or absent/None when ``optional``)."""
    v = row.get(name)
    if (v is None and optional) or isinstance(v, str):
        return v
    raise SnapshotError(f"{where}.{name} must be a string")


def _new_conversation() -> str:
    return f"chat-{uuid.uuid4().hex}"


@dataclass
class _State:
    session_id: str
    system: str
    max_turns: int
    conversation_id: str = field(default_factory=_new_conversation)
    history: list[dict[str, str]] = field(default_factory=list)
    #: the question awaiting its answer
    pending: str | None = None
    #: user turns in the current history
    turns: int = 0
    restarts: int = 0
    #: the history as index blocks (stable keys, token lengths), in prompt order
    keys: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    last_request_id: str | None = None

    def restart(self) -> None:
        self.conversation_id = _new_conversation()
        self.history = []
        self.pending = None
        self.turns = 0
        self.restarts += 1
        self.keys, self.tokens = [], []


def _describe(session_id: str, s: _State) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "turns": s.turns,
        "restarts": s.restarts,
        "messages": len(s.history),
        "pending": s.pending is not None,
        "conversation_id": s.conversation_id,
    }


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
        self._sessions: BoundedLRU[_State] = BoundedLRU(max_sessions, session_ttl, self._release, clock)

    # -- sessions ------------------------------------------------------------------

    def _release(self, state: _State) -> None:
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

    def _create(self, session_id: str, system: str | None, max_turns: int | None) -> _State:
        state = _State(
            session_id,
            self.system_instruction if system is None else system,
            self.max_turns if max_turns is None else max_turns,
        )
        return state

    def _live(self, session_id: str, *, use: bool, create: tuple[str, int] | None = None) -> _State | None:
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
            return [_describe(sid, s) for sid, s, _ in self._sessions.entries()]

    def describe(self, session_id: str) -> dict[str, Any] | None:
        """:meth:`info`'s entry for one session (not marked used), or None
        if it is not live. O(1) plus expiry."""
        with self._lock:
            state = self._live(session_id, use=False)
            return None if state is None else _describe(session_id, state)

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
            return [
                {
                    "id": sid,
                    "system": s.system,
                    "max_turns": s.max_turns,
                    "conversation_id": s.conversation_id,
                    "history": [[m["role"], m["content"]] for m in s.history],
                    "pending": s.pending,
                    "turns": s.turns,
                    "restarts": s.restarts,
                    "keys": list(s.keys),
                    "tokens": list(s.tokens),
                    "last_request_id": s.last_request_id,
                    "idle_seconds": round(max(0.0, now - last), 3),
                }
                for sid, s, last in self._sessions.entries()
            ]

    def parse(self, rows: Any, *, downtime: float = 0.0) -> list[tuple[str, _State, float]]:
        """Check :meth:`export` rows into ``(id, state, last_used)`` entries
        for :meth:`replace`; a bad row raises
        :class:`~contextpilot.core.persist.SnapshotError` naming it. O(rows)."""
        now = self._sessions.clock()
        out: list[tuple[str, _State, float]] = []
        for i, raw in enumerate(as_list([] if rows is None else rows, "chats")):
            row = as_dict(raw, f"chats[{i}]")
            where = f"chats[{i}]"

            sid = _row_str(row, "id", where)
            if not sid:
                raise SnapshotError(f"{where}.id must be a non-empty string")
            history = []
            for j, m in enumerate(as_list(row.get("history"), f"{where}.history")):
                if not (isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m)):
                    raise SnapshotError(f"{where}.history[{j}] must be [role, content]")
                history.append({"role": m[0], "content": m[1]})
            keys = [as_int(k, f"{where}.keys", None) for k in as_list(row.get("keys"), f"{where}.keys")]
            tokens = [as_int(t, f"{where}.tokens", 0) for t in as_list(row.get("tokens"), f"{where}.tokens")]
            if len(keys) != len(tokens):
                raise SnapshotError(f"{where}: keys and tokens differ in length")
            state = _State(
                sid,
                _row_str(row, "system", where),
                as_int(row.get("max_turns"), f"{where}.max_turns", 1),
                conversation_id=_row_str(row, "conversation_id", where),
                history=history,
                pending=_row_str(row, "pending", where, optional=True),
                turns=as_int(row.get("turns"), f"{where}.turns", 0),
                restarts=as_int(row.get("restarts"), f"{where}.restarts", 0),
                keys=keys,
                tokens=tokens,
                last_request_id=_row_str(row, "last_request_id", where, optional=True),
            )
            last = now - as_seconds(row.get("idle_seconds"), f"{where}.idle_seconds") - downtime
            out.append((sid, state, last))
        return out

    def replace(self, entries: list[tuple[str, _State, float]]) -> None:
        """Replace every session by :meth:`parse` output (e.g. on restore,
        together with the pilot's dedup conversations, which the old
        sessions' are not released into); bounds apply right after."""
        with self._lock:
            fresh: BoundedLRU[_State] = BoundedLRU(
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
        pilot = self.pilot
        with self._lock:
            s = self._live(session_id, use=True, create=settings)
            assert s is not None
            if s.turns >= s.max_turns:
                # bounded history: start over, and forget what the old one sent,
                # so no hint can refer to a dropped turn
                pilot.end_conversation(s.conversation_id)
                s.restart()
            parts = [self.header] if self.header else []
            sent: list[str] = []
            # only a history's first turn has a prefix other sessions can share
            ordered = pilot.plan_one(docs) if docs and not s.history else docs
            try:
                if docs:
                    res = pilot.deduplicate([ordered], s.conversation_id, self.hint_template)[0]
                    hints = dict(zip(res.hinted_positions, res.reference_hints))
                    parts.append(render_documents(ordered, hints))
                    tail = f"{relevance_line(docs)}\n\n{query}"
                    sent = [hints.get(i, d) for i, d in enumerate(ordered)]
                    content = "\n\n".join([*parts, tail])
                else:
                    tail = content = query
                keys, tokens = pilot.measure([*sent, tail])
            except BaseException:
                # the dedup state may count this turn's documents as sent, but
                # they never reached the history: forget it (documents go in
                # full again), so no hint can point at them
                pilot.end_conversation(s.conversation_id)
                s.conversation_id = _new_conversation()
                raise
            s.keys += keys
            s.tokens += tokens
            recorded = pilot.record_sent(s.keys, s.tokens)
            s.last_request_id = recorded[0] if recorded else None
            s.history.append({"role": "user", "content": content})
            s.pending = query
            s.turns += 1
            head = [{"role": "system", "content": s.system}] if s.system else []
            return head + [dict(m) for m in s.history]

    def _reply(self, session_id: str, answer: Any) -> str:
        _check_str(answer, "answer")
        with self._lock:
            s = self._live(session_id, use=True)
            if s is None or s.pending is None:
                raise ValueError(
                    f"no question awaits an answer in chat session {session_id!r}: call messages() first"
                )
            keys, tokens = self.pilot.measure([answer])
            question, s.pending = s.pending, None
            s.keys += keys
            s.tokens += tokens
            s.history.append({"role": "assistant", "content": answer})
            return question


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
