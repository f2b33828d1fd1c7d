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
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contextpilot.core.batch import split
from contextpilot.core.blocks import Block, BlockTable, make_token_counter, validate_contexts
from contextpilot.core.chat import ChatSession, ChatStore
from contextpilot.core.dedup import (
    DedupLedger,
    DedupResult,
    check_hint_template,
    deduplicate_turn,
)
from contextpilot.core.gcpause import gc_paused
from contextpilot.core.ids import is_health_check, new_request_id, new_request_ids, normalize_request_id
from contextpilot.core.index import EvictionReport, PrefixIndex
from contextpilot.core.lineage import RequestLineage
from contextpilot.core.overlap import resolve_backend
from contextpilot.core.persist import as_dict, as_int
from contextpilot.core.planner import DEFAULT_CHUNK, FlatSchedule, PlanOptions, plan
from contextpilot.core.prompt import build_messages, check_docs
from contextpilot.core.recent import RecentRequests
from contextpilot.core.workers import available_cpus

__all__ = ["ChatSession", "ChatStore", "ContextPilot", "ReorderResult"]

log = logging.getLogger("contextpilot")

#: Accepted for drop-in compatibility with the reference's constructor;
#: they tuned its clustering, which this planner does not use.
_LEGACY_OPTIONS = {"alpha", "linkage_method", "batch_size"}


@dataclass
class ReorderResult:
    """What :meth:`ContextPilot.reorder_detailed` planned: ``reordered[j]``
    holds exactly the blocks of ``contexts[order[j]]``; run in that order."""

    reordered: list[list[Block]]
    order: list[int]
    #: request id of each scheduled request (stateful mode), aligned with ``reordered``
    request_ids: list[str]
    groups: list[list[int]]
    mode: str
    #: tokens of each scheduled request's blocks the index says are cached
    cached_tokens: list[int] = field(default_factory=list)
    total_tokens: int = 0
    planning_seconds: float = 0.0
    #: where the time went: the planner's phases (CPU seconds, see
    #: ``Plan.timings``), ``recording`` (CPU) and ``wall``
    timings: dict[str, float] = field(default_factory=dict)


class ContextPilot:
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
        self.workers = workers
        self._options = PlanOptions(backend=resolve_backend(use_gpu), chunk_size=chunk_size)
        self._counter = make_token_counter(token_counter)
        self.hint_template = check_hint_template(hint_template) if hint_template else None
        self._lock = threading.RLock()
        self._index = PrefixIndex(
            capacity_tokens, ttl, max_nodes=max_nodes, max_requests=max_requests, clock=clock
        )
        self._recent = RecentRequests(recent_requests)
        self._conversations = DedupLedger(max_conversations, conversation_ttl, clock=clock)
        # parent-chain conversations: as many ids as requests, same idle TTL as conversations
        self._lineage = RequestLineage(
            max(max_conversations, min(max_requests, 100_000)), conversation_ttl, clock=clock
        )
        self._chats = ChatStore(self, max_sessions=max_chat_sessions, session_ttl=chat_ttl, clock=clock)
        self._calls = 0
        self._planned = 0
        self._last_workers = 0

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
            return self._reorder(ctxs, use_state)

    def _reorder(self, ctxs: list[list[Block]], use_state: bool, record: bool = True) -> ReorderResult:
        t0 = time.perf_counter()
        self._index.expire()
        if use_state:
            mode = "incremental" if len(self._index) else "initial"
        else:
            mode = "stateless"
        bulk = use_state and record
        workers = self.workers if self.workers is not None else available_cpus()
        p = plan(
            ctxs,
            table=BlockTable(self._counter),
            index=self._index if use_state else None,
            recent=self._recent if use_state else None,
            options=dataclasses.replace(
                self._options, workers=workers, with_keys=use_state and not bulk, flat=bulk
            ),
        )
        timings = dict(p.timings)
        rids: list[str] = []
        cached: list[int] = []
        if bulk and p.flat is not None:
            c0 = time.thread_time()
            rids, cached = self._record_batch(p.flat)
            timings["recording"] = time.thread_time() - c0
        self._calls += 1
        self._planned += len(ctxs)
        self._last_workers = int(timings.get("workers", 0))
        timings["wall"] = time.perf_counter() - t0
        return ReorderResult(
            reordered=p.contexts,
            order=p.order,
            request_ids=rids,
            groups=p.groups,
            mode=mode,
            cached_tokens=cached,
            total_tokens=p.total_tokens,
            planning_seconds=timings["wall"],
            timings=timings,
        )

    def _record_batch(self, flat: FlatSchedule) -> tuple[list[str], list[int]]:
        """The index learns a whole planned batch at once (see
        ``PrefixIndex.insert_batch``); returns the ids and hits."""
        with gc_paused(long_lived=True):  # the index's new nodes and the ring's rows stay
            return self._record_flat(flat)

    def _record_flat(self, flat: FlatSchedule) -> tuple[list[str], list[int]]:
        rids = new_request_ids(len(flat.lens))
        ukeys, of_pid = np.unique(flat.keys, return_inverse=True)  # per pid: small
        kid = of_pid.reshape(-1)[flat.pids]
        hits = self._index.insert_batch_ids(kid, ukeys, flat.tokens[flat.pids], flat.lens, rids)
        # only the last ``capacity`` requests stay in the recent ring
        n = len(flat.lens)
        tail = min(n, self._recent.capacity)
        if tail:
            offs = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(flat.lens, out=offs[1:])
            for row in split(ukeys[kid[offs[n - tail] :]].tolist(), flat.lens[n - tail :]):
                self._recent.add(row)
        return rids, hits.tolist()

    def _record(self, keys: list[int], tokens: list[int], rid: str | None = None) -> tuple[str, int]:
        """The index learns what one request sent; returns its id and hit."""
        rid = rid or new_request_id()
        hit = self._index.insert(keys, tokens, rid)
        self._recent.add(keys)
        return rid, hit

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
            if rid in self._index:
                self._index.touch(rid)
                return rid, 0
            return self._record(*BlockTable(self._counter).measure(row), rid)

    # -- prompts ---------------------------------------------------------------

    def optimize(
        self,
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
        with self._lock:
            if docs:
                ordered = self.plan_one(docs)
            if conversation_id is not None:
                res = deduplicate_turn(self._conversations, [ordered], conversation_id, self.hint_template)[0]
                hints = dict(zip(res.hinted_positions, res.reference_hints))
            if docs:
                # the index learns what is really sent: hints replace repeats
                self.record_sent(*self.measure([hints.get(i, d) for i, d in enumerate(ordered)]))
        return build_messages(
            ordered, query, original=docs, system_instruction=system_instruction, hints=hints
        )

    def optimize_batch(
        self,
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
        self,
        contexts: Sequence[Sequence[Block]],
        conversation_id: str,
        hint_template: str | None = None,
    ) -> list[DedupResult]:
        """Replace blocks this conversation sent before by reference hints.

        Works on the contexts as given (call after :meth:`reorder` to dedup
        the order you will send).
        """
        ctxs = validate_contexts(contexts, allow_empty_context=True)
        with self._lock:
            return deduplicate_turn(
                self._conversations, ctxs, conversation_id, hint_template or self.hint_template
            )

    def deduplicate_each(
        self,
        contexts: Sequence[Sequence[Block]],
        conversations: Sequence[str],
        hint_template: str | None = None,
    ) -> list[DedupResult]:
        """Like :meth:`deduplicate`, with one conversation per context, in
        order, under one lock. ``contexts`` must come from
        :func:`~contextpilot.core.blocks.validate_contexts` (checked once by
        the caller). O(blocks)."""
        if len(conversations) != len(contexts):
            raise ValueError("needs one conversation id per context")
        template = hint_template or self.hint_template
        with self._lock:
            return [
                deduplicate_turn(self._conversations, [ctx], conv, template)[0]
                for ctx, conv in zip(contexts, conversations)
            ]

    def sessions(self) -> list[dict[str, Any]]:
        """Conversations tracked for dedup (stale ones dropped first); those
        of :meth:`chat` sessions are listed too, as ``chat-<hex>``."""
        with self._lock:
            store = self._conversations
            store.expire()
            return [{"conversation_id": c, **(store.info(c) or {})} for c in store.ids()]

    def end_session(self, conversation_id: str) -> bool:
        """Forget one conversation's dedup state, and the :meth:`chat`
        session of that id (history included); False if neither existed."""
        chat = self._chats.end(conversation_id)
        return self.end_conversation(conversation_id) or chat

    # -- chat sessions ------------------------------------------------------------------

    def chat(
        self, session_id: str, *, system_instruction: str | None = None, max_turns: int | None = None
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
        return self._chats.session(session_id, system_instruction=system_instruction, max_turns=max_turns)

    def chat_sessions(self) -> list[dict[str, Any]]:
        """The live :meth:`chat` sessions (idle ones dropped first): id,
        turns, restarts, messages, pending, conversation_id."""
        return self._chats.info()

    @property
    def chats(self) -> ChatStore:
        return self._chats

    # -- the interface chat sessions use (:class:`contextpilot.core.chat.ChatBackend`) --------

    def plan_one(self, docs: Sequence[Block]) -> list[Block]:
        """One request's blocks in cache order (live index unless stateless),
        not recorded: pair with :meth:`record_sent` once the prompt is final."""
        with self._lock:
            return self._reorder([list(docs)], not self.stateless, record=False).reordered[0]

    def measure(self, blocks: Sequence[Block]) -> tuple[list[int], list[int]]:
        """Stable keys and token lengths of ``blocks`` (this pilot's token counter)."""
        return BlockTable(self._counter).measure(blocks)

    def record_sent(self, keys: list[int], tokens: list[int]) -> tuple[str, int] | None:
        """The index learns one sent request (keys and tokens from
        :meth:`measure`) under a fresh id; returns that id and the tokens
        the index believed cached. None when stateless or empty."""
        if self.stateless or not keys:
            return None
        with self._lock:
            return self._record(keys, tokens)

    def plan_batch(self, contexts: list[list[Block]], *, stateless: bool | None = None) -> ReorderResult:
        """Like :meth:`reorder_detailed`, but nothing is recorded (no request
        ids): the caller records what it finally sends with :meth:`record_sent`
        (e.g. after dedup hints replaced repeats). ``contexts`` must come from
        :func:`~contextpilot.core.blocks.validate_contexts` (checked once by
        the caller, for a whole batch split over several pilots)."""
        use_state = not (self.stateless if stateless is None else stateless)
        with self._lock:
            return self._reorder(contexts, use_state, record=False)

    def end_conversation(self, conversation_id: str) -> bool:
        """Forget one conversation's dedup state only (not a chat session of
        that id: see :meth:`end_session`); False if unknown."""
        with self._lock:
            return self._conversations.clear(conversation_id)

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
            return self._index.evict(ids)

    def reset(self) -> None:
        """Forget everything: cached prefixes, history, conversations, chat sessions."""
        self._chats.clear()  # outside our lock: the chat store's lock comes first
        with self._lock:
            self._index.reset()
            self._recent.clear()
            self._conversations.clear()
            self._lineage.clear()

    def export(self) -> dict[str, Any]:
        """The live state as JSON-ready data, consistent (under the lock):
        ``{"index", "conversations", "lineage", "recent", "chats", "pilot": {"calls", "planned"}}``,
        each part its store's ``export()``. Blocks appear only as stable
        keys, except in ``chats``: the :meth:`chat` sessions' histories are
        message texts (a session must resend them). O(state)."""
        with self._chats.hold():  # the chat store's lock comes first
            chats = self._chats.export()
            with self._lock:
                return {
                    "index": self._index.export(),
                    "conversations": self._conversations.export(),
                    "lineage": self._lineage.export(),
                    "recent": self._recent.export(),
                    "chats": chats,
                    "pilot": {"calls": self._calls, "planned": self._planned},
                }

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
            convs = self._conversations.empty_like()
            index_data = as_dict(data.get("index"), "index")
            convs.load(data.get("conversations"), downtime=downtime)
            lineage = self._lineage.empty_like()
            lineage.load(data.get("lineage"), downtime=downtime)
            recent = RecentRequests(self._recent.capacity, self._recent.max_posting)
            recent.load(data.get("recent"))
            counters = as_dict(data.get("pilot"), "pilot")
            calls = as_int(counters.get("calls"), "pilot.calls", 0)
            planned = as_int(counters.get("planned"), "pilot.planned", 0)
            dropped = self._index.load(index_data, downtime=downtime)  # the last step that can fail
            self._conversations.replace_with(convs)
            self._lineage = lineage
            self._recent = recent
            self._calls, self._planned = calls, planned
            self._chats.replace(chats)  # after the ledger: dropped sessions end their conversations there
            return {
                "chat_sessions": len(self._chats),
                "requests": len(self._index),
                "nodes": self._index.nodes,
                "conversations": len(self._conversations),
                "recent": len(self._recent),
                "dropped_by_bounds": dropped,
            }

    @property
    def index(self) -> PrefixIndex:
        return self._index

    @property
    def conversations(self) -> DedupLedger:
        return self._conversations

    def conversations_for(self, parent_request_ids: Sequence[str | None]) -> list[str]:
        """The conversation each context continues (0.5.0 ``parent_request_ids``):
        a parent's conversation, or a new one for ``None`` or an unknown parent.
        Nothing is stored until :meth:`link_requests`."""
        with self._lock:
            return self._lineage.resolve(parent_request_ids)

    def link_requests(self, request_ids: Sequence[str], conversations: Sequence[str]) -> None:
        """Remember which conversation each request id belongs to, so it can be a parent."""
        with self._lock:
            self._lineage.link(request_ids, conversations)

    @property
    def lineage(self) -> RequestLineage:
        return self._lineage

    def stats(self) -> dict[str, Any]:
        chats = len(self._chats)  # before our lock: the chat store's lock comes first
        with self._lock:
            s = self._index.stats()
            return {
                "mode": "stateless" if self.stateless else "live",
                "calls": self._calls,
                "requests_planned": self._planned,
                "last_plan_workers": self._last_workers,
                "live_requests": s.requests,
                "index_nodes": s.nodes,
                "index_tokens": s.tokens,
                "capacity_tokens": s.capacity_tokens,
                "predicted_hit_ratio": round(s.hit_ratio, 6),
                "evicted_requests": s.evicted_requests,
                "evicted_by_engine": s.evicted_by_engine,
                "evicted_by_capacity": s.evicted_by_capacity,
                "evicted_by_ttl": s.evicted_by_ttl,
                "conversations": len(self._conversations),
                "chat_sessions": chats,
            }

    get_stats = stats
