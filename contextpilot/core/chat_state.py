"""One chat session's state, and its snapshot rows.

:class:`ChatState` is what a :class:`~contextpilot.core.chat.ChatStore`
keeps per session: settings, the history (message texts), the question
awaiting its answer, the history's dedup conversation id and its blocks as
the live index saw them (stable keys and token lengths, in prompt order).
It is plain data: the store's lock guards it, and
:mod:`contextpilot.core.chat_turn` changes it one turn at a time.

:meth:`ChatState.to_row` writes one session as JSON-ready data (it holds
document text, unlike the other stores' exports); :func:`parse_rows` reads
such rows back, checked, raising
:class:`~contextpilot.core.persist.SnapshotError` naming the bad field
(``chats[3].history[1]``) and changing nothing. Both O(history).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from contextpilot.core.persist import SnapshotError, as_dict, as_int, as_list, as_seconds

__all__ = ["ChatState", "new_conversation_id", "parse_rows"]


def new_conversation_id() -> str:
    """A fresh dedup conversation id for one history generation (``chat-<hex>``)."""
    return f"chat-{uuid.uuid4().hex}"


@dataclass
class ChatState:
    session_id: str
    system: str
    max_turns: int
    conversation_id: str = field(default_factory=new_conversation_id)
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
        """Start an empty history under a new dedup conversation (the
        caller ends the old conversation in the pilot)."""
        self.conversation_id = new_conversation_id()
        self.history = []
        self.pending = None
        self.turns = 0
        self.restarts += 1
        self.keys, self.tokens = [], []

    def describe(self) -> dict[str, Any]:
        """The summary :meth:`ChatStore.info` lists. O(1)."""
        return {
            "session_id": self.session_id,
            "turns": self.turns,
            "restarts": self.restarts,
            "messages": len(self.history),
            "pending": self.pending is not None,
            "conversation_id": self.conversation_id,
        }

    def to_row(self, idle_seconds: float) -> dict[str, Any]:
        """This session as an export row (see :func:`parse_rows`). O(history)."""
        return {
            "id": self.session_id,
            "system": self.system,
            "max_turns": self.max_turns,
            "conversation_id": self.conversation_id,
            "history": [[m["role"], m["content"]] for m in self.history],
            "pending": self.pending,
            "turns": self.turns,
            "restarts": self.restarts,
            "keys": list(self.keys),
            "tokens": list(self.tokens),
            "last_request_id": self.last_request_id,
            "idle_seconds": round(max(0.0, idle_seconds), 3),
        }


def _row_str(row: dict[str, Any], name: str, where: str, optional: bool = False) -> Any:
    """``row[name]`` if it is a string (or absent/None when ``optional``)."""
    v = row.get(name)
    if (v is None and optional) or isinstance(v, str):
        return v
    raise SnapshotError(f"{where}.{name} must be a string")


def _parse_row(row: dict[str, Any], where: str) -> ChatState:
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
    return ChatState(
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


def parse_rows(rows: Any, now: float, downtime: float = 0.0) -> list[tuple[str, ChatState, float]]:
    """Check :meth:`ChatState.to_row` rows (``None``: none) into
    ``(id, state, last_used)`` entries, ``last_used`` on the clock whose
    time is ``now``, pushed back by ``downtime`` seconds. O(rows + history)."""
    out: list[tuple[str, ChatState, float]] = []
    for i, raw in enumerate(as_list([] if rows is None else rows, "chats")):
        where = f"chats[{i}]"
        state = _parse_row(as_dict(raw, where), where)
        last = now - as_seconds(raw.get("idle_seconds"), f"{where}.idle_seconds") - downtime
        out.append((state.session_id, state, last))
    return out
