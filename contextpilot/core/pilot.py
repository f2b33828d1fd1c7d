"""``ContextPilot``: the object users hold.

Stateful by default: every planned request is recorded in the live index
(what the engine is believed to hold) under a fresh request id, so later
calls put cached blocks first; engine hooks report evictions through
:meth:`ContextPilot.evict`. ``stateless=True`` plans each call on its own.

Contract of :meth:`ContextPilot.reorder`, identical on the first and every
later call, for one context or many: ``reordered[j]`` holds exactly the
blocks of ``contexts[order[j]]`` (duplicates kept), and requests should run
in that order.

Multi-turn: :meth:`ContextPilot.chat` gives append-only chat sessions
(:mod:`contextpilot.core.chat`) whose dedup hints always refer to text in
the history they return; :meth:`ContextPilot.optimize` with a
``conversation_id`` hints too, but leaves keeping the history to the caller.

Thread-safe: one lock serialises planning and state updates (a chat
store's lock, when both are held, is taken first).

Split by job: planning and recording against the live state
(:mod:`contextpilot.core.live_plan`), the stores and their snapshots
(:mod:`contextpilot.core.pilot_state`), prompts, multi-turn dedup and chat
sessions (:mod:`contextpilot.core.pilot_online`, mixed in); this module
holds the front object and its locking.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.chat import ChatSession, ChatStore
from contextpilot.core.clustered import Clustered, Share
from contextpilot.core.dedup import DedupLedger, check_hint_template
from contextpilot.core.ids import is_health_check, new_request_id, normalize_request_id
from contextpilot.core.index import EvictionReport, PrefixIndex
from contextpilot.core.lineage import RequestLineage
from contextpilot.core.live_plan import LivePlanner, ReorderResult
from contextpilot.core.overlap import resolve_backend
from contextpilot.core.persist import as_dict
from contextpilot.core.pilot_online import OnlineMethods
from contextpilot.core.pilot_state import PilotState
from contextpilot.core.planner import DEFAULT_CHUNK, PlanOptions
from contextpilot.core.recent import RecentRequests
from contextpilot.core.validation import validate_contexts

__all__ = ["ChatSession", "ChatStore", "ContextPilot", "ReorderResult"]

log = logging.getLogger("contextpilot")

#: Accepted for drop-in compatibility with the reference's constructor;
#: they tuned its clustering, which this planner does not use.
_LEGACY_OPTIONS = {"alpha", "linkage_method", "batch_size"}


class ContextPilot(OnlineMethods):
    """Plans prompts for prefix-cache reuse; see the module docstring.

    Parameters: ``stateless`` — plan each call on its own;
    ``capacity_tokens`` — the engine's KV cache size in tokens, so the index
    can mirror its LRU evictions (``None``: rely on hooks and TTL);
    ``ttl`` — seconds after which unused cached content is presumed evicted;
    ``token_counter`` — callable, tokenizer (``encode``) or mapping giving
    block lengths (default: about 4 bytes per token; ids weigh 64);
    ``hint_template`` — multi-turn dedup hint (fields ``{ref}``,
    ``{preview}``, ``{index}``); the ``max_*`` bounds cap all state
    (``max_chat_sessions`` / ``chat_ttl``: the sessions of :meth:`chat`);
    ``use_gpu`` — compute request overlaps with torch (CUDA if present;
    needs the ``torch`` extra, never required);
    ``workers`` — processes planning a huge batch's chunks in parallel
    (``None``: one per available CPU; 1: plan in this process). Batches of
    more than ``chunk_size`` requests are cut into chunks along a
    similarity sort; the plan depends on ``chunk_size`` but never on
    ``workers``. Workers are plain child processes started per big call;
    they never import ``__main__``, so scripts need no guard.
    ``clock`` — seconds since any origin (default :func:`time.monotonic`):
    the one clock the index, dedup and chat-session TTLs are measured on, so
    a test can move time instead of sleeping.
    """

    def __init__(
        self,
        *,
        stateless: bool = False,
        capacity_tokens: float | None = None,
        ttl: float | None = None,
        token_counter: Any = None,
        hint_template: str | None = None,
        max_requests: int = 1_000_000,
        max_nodes: int = 2_000_000,
        max_conversations: int = 10_000,
        conversation_ttl: float | None = 3600.0,
        recent_requests: int = 4096,
        max_chat_sessions: int = 10_000,
        chat_ttl: float | None = 3600.0,
        use_gpu: bool = False,
        workers: int | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        clock: Callable[[], float] = time.monotonic,
        **legacy: Any,
    ) -> None:
        unknown = set(legacy) - _LEGACY_OPTIONS
        if unknown:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
        if legacy:
            log.debug("ignoring reference-only options %s", sorted(legacy))
        self.stateless = stateless
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an int >= 1 or None, got {workers!r}")
        self.hint_template = check_hint_template(hint_template) if hint_template else None
        self._lock = threading.RLock()
        self._state = PilotState(
            capacity_tokens=capacity_tokens,
            ttl=ttl,
            max_requests=max_requests,
            max_nodes=max_nodes,
            max_conversations=max_conversations,
            conversation_ttl=conversation_ttl,
            recent_requests=recent_requests,
            clock=clock,
        )
        self._planner = LivePlanner(
            self._state,
            PlanOptions(backend=resolve_backend(use_gpu), chunk_size=chunk_size),
            token_counter,
            workers,
        )
        self._chats = ChatStore(self, max_sessions=max_chat_sessions, session_ttl=chat_ttl, clock=clock)

    @property
    def workers(self) -> int | None:
        """Planning worker processes (``None``: one per available CPU)."""
        return self._planner.workers

    # -- planning ------------------------------------------------------------

    def reorder(
        self,
        contexts: Sequence[Sequence[Block]],
        initial_tokens_per_context: int = 0,
        conversation_id: str | None = None,
    ) -> tuple[list[list[Block]], list[int]]:
        """Reorder blocks and requests; returns ``(reordered, order)``.

        ``initial_tokens_per_context`` and ``conversation_id`` are accepted
        for compatibility and do not change the plan (a shared system prompt
        shifts every prompt alike).
        """
        if (
            isinstance(initial_tokens_per_context, bool)
            or not isinstance(initial_tokens_per_context, int)
            or initial_tokens_per_context < 0
        ):
            raise ValueError("initial_tokens_per_context must be an int >= 0")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise ValueError("conversation_id must be a string or None")
        r = self.reorder_detailed(contexts)
        return r.reordered, r.order

    def reorder_detailed(
        self, contexts: Sequence[Sequence[Block]], *, stateless: bool | None = None
    ) -> ReorderResult:
        """Like :meth:`reorder`, with request ids, groups and cache figures."""
        ctxs = validate_contexts(contexts, copy=False)  # planning only reads them
        use_state = not (self.stateless if stateless is None else stateless)
        with self._lock:
            return self._planner.plan(ctxs, use_state)

    def record(self, blocks: Sequence[Block], request_id: str | None = None) -> tuple[str, int]:
        """Tell the index a request sent ``blocks`` (in this order), e.g. a
        prompt that did not go through :meth:`reorder`. A live id is only
        marked used; a new one is recorded. Returns the (normalised) id and
        the tokens the index believed cached. No-op when stateless."""
        (row,) = validate_contexts([blocks])
        rid = normalize_request_id(request_id) if request_id else new_request_id()
        if self.stateless:
            return rid, 0
        with self._lock:
            if rid in self._state.index:
                self._state.index.touch(rid)
                return rid, 0
            return self._planner.record(*self.measure(row), rid)

    @property
    def chats(self) -> ChatStore:
        return self._chats

    def hold(self) -> threading.RLock:
        """This pilot's lock (re-entrant), for a caller making several calls
        one atomic step; a chat store's lock, if also held, is taken first."""
        return self._lock

    # -- the interface chat sessions use (:class:`contextpilot.core.chat.ChatBackend`) --------

    def plan_one(self, docs: Sequence[Block]) -> list[Block]:
        """One request's blocks in cache order (live index unless stateless),
        not recorded: pair with :meth:`record_sent` once the prompt is final."""
        with self._lock:
            return self._planner.plan([list(docs)], not self.stateless, record=False).reordered[0]

    def measure(self, blocks: Sequence[Block]) -> tuple[list[int], list[int]]:
        """Stable keys and token lengths of ``blocks`` (this pilot's token counter)."""
        return self._planner.table().measure(blocks)

    def record_sent(self, keys: list[int], tokens: list[int]) -> tuple[str, int] | None:
        """The index learns one sent request (keys and tokens from
        :meth:`measure`) under a fresh id; returns that id and the tokens
        the index believed cached. None when stateless or empty."""
        if self.stateless or not keys:
            return None
        with self._lock:
            return self._planner.record(keys, tokens)

    def plan_batch(
        self, contexts: list[list[Block]], *, stateless: bool | None = None, record: bool = False
    ) -> ReorderResult:
        """Like :meth:`reorder_detailed` for ``contexts`` from
        :func:`~contextpilot.core.validation.validate_contexts` (checked once
        by the caller, for a whole batch split over several pilots). Without
        ``record`` nothing is recorded (no request ids): the caller records
        what it finally sends with :meth:`record_sent` (e.g. after dedup hints
        replaced repeats); with it the index learns the schedule in bulk, as
        :meth:`reorder_detailed` does."""
        use_state = not (self.stateless if stateless is None else stateless)
        with self._lock:
            return self._planner.plan(contexts, use_state, record=record)

    def plan_share(
        self, clustered: Clustered, members: Sequence[int], *, stateless: bool | None = None
    ) -> Share:
        """Like :meth:`plan_batch` for the requests ``members`` (input
        indices) of a batch clustered once for several pilots
        (:func:`~contextpilot.core.clustered.cluster_once`): laid out along
        their part of its forest against this pilot's live index, without
        clustering them again; ``order`` holds input indices of the whole
        batch, ``keys``/``tokens`` measure the laid-out blocks."""
        use_state = not (self.stateless if stateless is None else stateless)
        with self._lock:
            return self._planner.plan_share(clustered, members, use_state)

    def block_table(self) -> BlockTable:
        """A fresh :class:`~contextpilot.core.blocks.BlockTable` with this pilot's token counter."""
        return self._planner.table()

    @property
    def token_counter(self) -> Callable[[Block], int]:
        """Token length of a block, as this pilot's index counts it."""
        return self._planner.counter

    @property
    def plan_options(self) -> PlanOptions:
        """How this pilot plans (``k``, ``chunk_size``, ``backend``)."""
        return self._planner.options

    def end_conversation(self, conversation_id: str) -> bool:
        """Forget one conversation's dedup state only (not a chat session of
        that id: see :meth:`end_session`); False if unknown."""
        with self._lock:
            return self._state.conversations.clear(conversation_id)

    # -- state -----------------------------------------------------------------

    def evict(self, request_ids: Sequence[str]) -> EvictionReport:
        """Engine eviction notice: drop these requests from the live index.

        Ids are normalised (``chatcmpl-``/``cmpl-`` prefixes, vLLM suffixes);
        engine health checks are ignored.
        """
        if isinstance(request_ids, str):
            raise ValueError("request_ids must be a list of strings, not a string")
        ids: list[str] = []
        for i, rid in enumerate(request_ids):
            if not isinstance(rid, str):
                raise ValueError(f"request_ids[{i}] must be a string, got {type(rid).__name__}")
            if not is_health_check(rid):
                ids.append(normalize_request_id(rid))
        with self._lock:
            return self._state.index.evict(ids)

    def reset(self) -> None:
        """Forget everything: cached prefixes, history, conversations, chat sessions."""
        self._chats.clear()  # outside our lock: the chat store's lock comes first
        with self._lock:
            self._state.reset()

    def export(self) -> dict[str, Any]:
        """The live state as JSON-ready data, consistent (under the lock):
        ``{"index", "conversations", "lineage", "recent", "chats", "pilot": {"calls", "planned"}}``,
        each part its store's ``export()``. Blocks appear only as stable
        keys, except in ``chats``: the :meth:`chat` sessions' histories are
        message texts (a session must resend them). O(state)."""
        with self._chats.hold():  # the chat store's lock comes first
            chats = self._chats.export()
            with self._lock:
                out = self._state.export()
        parts = ("index", "conversations", "lineage", "recent")
        return {**{k: out[k] for k in parts}, "chats": chats, "pilot": out["pilot"]}

    def load(self, data: Any, *, downtime: float = 0.0) -> dict[str, int]:
        """Replace the live state by :meth:`export` data, all or nothing: every
        part is checked into fresh stores first, so a bad value raises
        :class:`~contextpilot.core.persist.SnapshotError` (a ValueError) naming
        the field and the instance is unchanged. ``downtime`` seconds are
        added to every age (TTLs keep counting); this instance's bounds apply
        right after. Returns what was kept: requests, nodes, conversations,
        recent, chat_sessions, and dropped_by_bounds. A snapshot without
        ``chats`` (older builds) restores no chat session. O(state)."""
        data = as_dict(data, "state")
        with self._chats.hold(), self._lock:  # the chat store's lock comes first
            chats = self._chats.parse(data.get("chats"), downtime=downtime)
            kept = self._state.load(data, downtime=downtime)  # all or nothing
            self._chats.replace(chats)  # after the ledger: dropped sessions end their conversations there
            return {"chat_sessions": len(self._chats), **kept}

    @property
    def index(self) -> PrefixIndex:
        return self._state.index

    @property
    def recent(self) -> RecentRequests:
        """Recent requests (online ordering hints)."""
        return self._state.recent

    @property
    def conversations(self) -> DedupLedger:
        return self._state.conversations

    def conversations_for(self, parent_request_ids: Sequence[str | None]) -> list[str]:
        """The conversation each context continues (0.5.0 ``parent_request_ids``):
        a parent's conversation, or a new one for ``None`` or an unknown parent.
        Nothing is stored until :meth:`link_requests`."""
        with self._lock:
            return self._state.lineage.resolve(parent_request_ids)

    def link_requests(self, request_ids: Sequence[str], conversations: Sequence[str]) -> None:
        """Remember which conversation each request id belongs to, so it can be a parent."""
        with self._lock:
            self._state.lineage.link(request_ids, conversations)

    @property
    def lineage(self) -> RequestLineage:
        return self._state.lineage

    def stats(self) -> dict[str, Any]:
        chats = len(self._chats)  # before our lock: the chat store's lock comes first
        with self._lock:
            return {**self._state.stats(self.stateless), "chat_sessions": chats}

    get_stats = stats
