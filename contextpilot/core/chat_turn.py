"""One chat turn: the prompt a session sends, and the answer it records.

:func:`open_turn` builds a turn's messages on a session's
:class:`~contextpilot.core.chat_state.ChatState`: the whole history plus a
user message holding this turn's documents (after an optional header,
labelled by content with :func:`contextpilot.core.prompt.render_documents`,
a document the history already holds replaced by a reference hint from the
pilot's dedup ledger), the relevance order and the question.
:func:`close_turn` appends the model's answer. Both run under the owning
:class:`~contextpilot.core.chat.ChatStore`'s lock, which is taken before
the pilot's.

Cache order: only a history's first turn has a prefix other sessions can
share (the fixed system instruction and header), so only its documents are
ordered by the pilot against the live index; later turns keep the caller's
(relevance) order. The live index then learns the session's whole block
sequence (documents or their hints, each turn's question, each answer) as
one request per turn.

**No dangling hints.** A history restarted after ``max_turns`` turns ends
its dedup conversation first, and a turn that fails after the dedup step
moves the session to a fresh conversation, so a hint only ever names a
document whose full text is in the returned messages. Cost: O(documents +
blocks in the history) for the index record, O(history) for the copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from contextpilot.core.blocks import Block
from contextpilot.core.chat_state import ChatState, new_conversation_id
from contextpilot.core.dedup import DedupResult
from contextpilot.core.prompt import relevance_line, render_documents

__all__ = ["ChatBackend", "close_turn", "open_turn"]


class ChatBackend(Protocol):
    """What a :class:`~contextpilot.core.chat.ChatStore` needs from its pilot
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


def open_turn(
    pilot: ChatBackend, s: ChatState, docs: list[str], query: str, header: str, hint_template: str
) -> list[dict[str, str]]:
    """Add the user turn (``docs``: checked documents, most relevant first;
    ``query``: checked question) to ``s`` and return the messages to send:
    ``[system?, user, assistant, …, user]`` (copies)."""
    if s.turns >= s.max_turns:
        # bounded history: start over, and forget what the old one sent,
        # so no hint can refer to a dropped turn
        pilot.end_conversation(s.conversation_id)
        s.restart()
    parts = [header] if header else []
    sent: list[Block] = []
    # only a history's first turn has a prefix other sessions can share
    ordered = pilot.plan_one(docs) if docs and not s.history else docs
    try:
        if docs:
            res = pilot.deduplicate([ordered], s.conversation_id, hint_template)[0]
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
        s.conversation_id = new_conversation_id()
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


def close_turn(pilot: ChatBackend, s: ChatState, answer: str) -> str:
    """Append the model's ``answer`` (a checked string) to the pending
    question of ``s``; returns that question. ValueError if none awaits."""
    if s.pending is None:
        raise ValueError(
            f"no question awaits an answer in chat session {s.session_id!r}: call messages() first"
        )
    keys, tokens = pilot.measure([answer])
    question, s.pending = s.pending, None
    s.keys += keys
    s.tokens += tokens
    s.history.append({"role": "assistant", "content": answer})
    return question
