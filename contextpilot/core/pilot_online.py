"""The online half of :class:`~contextpilot.core.pilot.ContextPilot`:
prompts for one turn or a batch (``optimize``), multi-turn dedup and chat
sessions.

Written only against the pilot's public planning interface
(:class:`PilotCore`: ``plan_one``, ``measure``, ``record_sent``,
``reorder_detailed``, the dedup ledger, the chat store and ``hold()``, its
lock), so the planning and state code (:mod:`contextpilot.core.live_plan`,
:mod:`contextpilot.core.pilot_state`) stays in its own modules.
:meth:`OnlineMethods.optimize` plans, deduplicates and records one prompt
under one hold of the lock, in that order: the index learns what is really
sent (hints in place of repeats).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from contextpilot.core.blocks import Block
from contextpilot.core.chat import ChatSession, ChatStore
from contextpilot.core.dedup import DedupLedger, DedupResult, deduplicate_turn
from contextpilot.core.live_plan import ReorderResult
from contextpilot.core.prompt import build_messages, check_docs
from contextpilot.core.validation import ContextLimits, validate_contexts

__all__ = ["OnlineMethods", "PilotCore"]


class PilotCore(Protocol):
    """What :class:`OnlineMethods` needs of the pilot it is mixed into."""

    hint_template: str | None

    @property
    def conversations(self) -> DedupLedger: ...

    @property
    def chats(self) -> ChatStore: ...

    def hold(self) -> threading.RLock: ...

    def plan_one(self, docs: Sequence[Block]) -> list[Block]: ...

    def measure(self, blocks: Sequence[Block]) -> tuple[list[int], list[int]]: ...

    def record_sent(self, keys: list[int], tokens: list[int]) -> tuple[str, int] | None: ...

    def reorder_detailed(
        self, contexts: Sequence[Sequence[Block]], *, stateless: bool | None = None
    ) -> ReorderResult: ...

    def end_conversation(self, conversation_id: str) -> bool: ...


class OnlineMethods:
    """Mixed into :class:`~contextpilot.core.pilot.ContextPilot` (see the module docstring)."""

    # -- prompts ---------------------------------------------------------------

    def optimize(
        self: PilotCore,
        docs: Sequence[str],
        query: str,
        *,
        conversation_id: str | None = None,
        system_instruction: str | None = None,
    ) -> list[dict[str, str]]:
        """``[system, user]`` for one online turn: documents reordered for the
        cache (system message), the relevance order restated and the query
        last (user message); the live index records what is sent.

        With ``conversation_id``, a document this conversation was given
        before (by earlier ``optimize`` calls or :meth:`deduplicate`) is
        replaced by a reference hint. The returned pair holds only *this*
        turn: the hint is honest only if the caller keeps the earlier turns'
        messages and sends them with this one, in order. To have that done
        for you (append-only history, hints only for text in that history,
        bounded restarts), use :meth:`chat` instead.
        """
        docs = check_docs(docs, "docs")
        ordered: Sequence[Block] = docs
        hints: dict[int, str] = {}
        with self.hold():
            if docs:
                ordered = self.plan_one(docs)
            if conversation_id is not None:
                res = deduplicate_turn(self.conversations, [ordered], conversation_id, self.hint_template)[0]
                hints = dict(zip(res.hinted_positions, res.reference_hints))
            if docs:
                # the index learns what is really sent: hints replace repeats
                self.record_sent(*self.measure([hints.get(i, d) for i, d in enumerate(ordered)]))
        return build_messages(
            ordered, query, original=docs, system_instruction=system_instruction, hints=hints
        )

    def optimize_batch(
        self: PilotCore,
        all_docs: Sequence[Sequence[str]],
        all_queries: Sequence[str],
        *,
        system_instruction: str | None = None,
    ) -> tuple[list[list[dict[str, str]]], list[int]]:
        """Messages for a batch; ``messages[j]`` answers ``all_queries[order[j]]``."""
        if isinstance(all_queries, str) or len(all_docs) != len(all_queries):
            raise ValueError(
                f"all_docs and all_queries must be lists of equal length "
                f"(got {len(all_docs)} and {1 if isinstance(all_queries, str) else len(all_queries)})"
            )
        docs = [check_docs(d, f"all_docs[{i}]") for i, d in enumerate(all_docs)]
        r = self.reorder_detailed(docs)
        messages = [
            build_messages(
                r.reordered[j], all_queries[i], original=docs[i], system_instruction=system_instruction
            )
            for j, i in enumerate(r.order)
        ]
        return messages, r.order

    # -- multi-turn dedup ---------------------------------------------------------

    def deduplicate(
        self: PilotCore,
        contexts: Sequence[Sequence[Block]],
        conversation_id: str,
        hint_template: str | None = None,
        *,
        limits: ContextLimits | None = None,
    ) -> list[DedupResult]:
        """Replace blocks this conversation sent before by reference hints.

        Works on the contexts as given (call after :meth:`reorder` to dedup
        the order you will send). ``limits``: size limits checked in the
        same validation walk (a :class:`~contextpilot.core.validation.LimitError`).
        """
        ctxs = validate_contexts(contexts, allow_empty_context=True, limits=limits)
        with self.hold():
            return deduplicate_turn(
                self.conversations, ctxs, conversation_id, hint_template or self.hint_template
            )

    def deduplicate_each(
        self: PilotCore,
        contexts: Sequence[Sequence[Block]],
        conversations: Sequence[str],
        hint_template: str | None = None,
    ) -> list[DedupResult]:
        """Like :meth:`deduplicate`, with one conversation per context, in
        order, under one lock. ``contexts`` must come from
        :func:`~contextpilot.core.validation.validate_contexts` (checked once by
        the caller). O(blocks)."""
        if len(conversations) != len(contexts):
            raise ValueError("needs one conversation id per context")
        template = hint_template or self.hint_template
        with self.hold():
            return [
                deduplicate_turn(self.conversations, [ctx], conv, template)[0]
                for ctx, conv in zip(contexts, conversations)
            ]

    def sessions(self: PilotCore) -> list[dict[str, Any]]:
        """Conversations tracked for dedup (stale ones dropped first); those
        of :meth:`chat` sessions are listed too, as ``chat-<hex>``."""
        with self.hold():
            store = self.conversations
            store.expire()
            return [{"conversation_id": c, **(store.info(c) or {})} for c in store.ids()]

    def end_session(self: PilotCore, conversation_id: str) -> bool:
        """Forget one conversation's dedup state, and the :meth:`chat`
        session of that id (history included); False if neither existed."""
        chat = self.chats.end(conversation_id)
        return self.end_conversation(conversation_id) or chat

    # -- chat sessions ------------------------------------------------------------------

    def chat(
        self: PilotCore,
        session_id: str,
        *,
        system_instruction: str | None = None,
        max_turns: int | None = None,
    ) -> ChatSession:
        """The append-only chat session ``session_id`` (created on first use).

        ``session.messages(docs, query)`` returns the whole conversation so
        far plus this turn (send it as is), ``session.reply(answer)`` records
        the model's answer. Documents the history already holds become
        short hints, and only those: see :mod:`contextpilot.core.chat`.
        ``system_instruction`` (``""``: no system message) and ``max_turns``
        (history restarts after that many turns; default 64) are fixed for a
        live session; ``None`` keeps them.
        """
        return self.chats.session(session_id, system_instruction=system_instruction, max_turns=max_turns)

    def chat_sessions(self: PilotCore) -> list[dict[str, Any]]:
        """The live :meth:`chat` sessions (idle ones dropped first): id,
        turns, restarts, messages, pending, conversation_id."""
        return self.chats.info()
