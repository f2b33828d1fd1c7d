"""Index endpoints: /reorder (and its deprecated aliases), /deduplicate,
/evict, /reset, /sessions, /requests. Planning runs in a worker thread so
the event loop never blocks; the pilot's lock makes concurrent calls safe.

With several engine replicas (one live index each), a stateful ``/reorder``
plans each context for one replica and says which in ``replicas``: the one
named by ``replica`` if given; else one context goes where the router finds
its heaviest cached path (load permitting), and a batch is split along its
prefix-sharing groups (:meth:`Router.assign_groups`; the batch is clustered
once), each replica's share laid out against its own index. The handler
only translates: the contexts (size limits included) are checked by the
core in one walk (:func:`~contextpilot.core.fanout.reorder_over`). Send each request through the proxy with
its ``request_id`` and it reaches that replica. ``/evict`` drops ids from
the replica named in the notice, or from whichever replica holds them.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from starlette.concurrency import run_in_threadpool

from contextpilot.core.dedup import DedupResult, check_hint_template
from contextpilot.core.fanout import FieldError, reorder_over
from contextpilot.core.ids import is_health_check, new_request_ids, normalize_request_id
from contextpilot.core.index import EvictionReport
from contextpilot.core.validation import ContextError, LimitError, validate_contexts
from contextpilot.server.limits import unprocessable
from contextpilot.server.models import (
    DedupRequest,
    DedupResponse,
    DedupResultModel,
    DedupSummary,
    ErrorBody,
    EvictRequest,
    EvictResponse,
    ReorderRequest,
    ReorderResponse,
    ReorderStats,
    RequestsResponse,
    SessionsResponse,
    StatusResponse,
)
from contextpilot.server.replicas import Replica
from contextpilot.server.state import ServerState, get_state

__all__ = ["router"]

router = APIRouter()


def _context_error(e: ContextError) -> HTTPException:
    return unprocessable(["contexts", *e.path], str(e))


def _dedup_model(r: DedupResult, conversation: str, rid: str | None) -> DedupResultModel:
    return DedupResultModel(
        request_id=rid,
        conversation_id=conversation,
        original_docs=r.original_docs,
        deduplicated_docs=r.deduplicated_docs,
        docs_with_hints=r.docs_with_hints,
        overlapping_docs=r.overlapping_docs,
        new_docs=r.new_docs,
        reference_hints=r.reference_hints,
        hinted_positions=r.hinted_positions,
        blocks_deduped=r.blocks_deduped,
        blocks_total=r.blocks_total,
        block_chars_saved=r.block_chars_saved,
    )


def _reorder(st: ServerState, req: ReorderRequest, stateless: bool | None, schedule: bool) -> ReorderResponse:
    # every check comes before the first state change: a rejected call applies nothing
    # (pydantic checked the body's shape; the core checks the contexts, limits included, in one walk)
    conversations: list[str] | None = None
    chained = False  # conversations named by parent request ids: link the new ids
    if req.deduplicate:
        if req.conversation_ids is not None:
            conversations = list(req.conversation_ids)
        elif req.conversation_id is not None:
            conversations = [req.conversation_id] * len(req.contexts)
        else:
            conversations = _chain(st, req.parent_request_ids, len(req.contexts))
            chained = True
    reps = st.replicas
    pinned = _replica(st, req.replica, ["replica"]) if req.replica is not None else None
    use_state = not (st.config.stateless if stateless is None else stateless)
    routed = reps.multi and use_state  # a stateless plan touches no replica's index
    t0 = time.perf_counter()
    try:
        out = reorder_over(
            [x.pilot for x in reps] if routed else [reps.primary.pilot],
            req.contexts,
            place=reps.placement(pinned) if routed else None,
            stateless=stateless,
            conversations=conversations,
            hint_template=req.hint_template,
            limits=st.limits.context_limits,
        )
    except LimitError as e:
        raise st.limits.error(e) from None
    except ContextError as e:
        raise _context_error(e) from None
    except FieldError as e:
        raise unprocessable([e.field], str(e)) from None
    if chained and conversations is not None and out.result.request_ids:
        st.pilot.link_requests(out.result.request_ids, [conversations[i] for i in out.result.order])
    st.metrics.planning.observe(time.perf_counter() - t0)
    st.metrics.planned.inc(len(req.contexts))
    r = out.result
    dedup = None
    if out.dedup is not None and conversations is not None:
        results = [_dedup_model(res, conversations[i], res.request_id) for res, i in zip(out.dedup, r.order)]
        dedup = DedupSummary(
            results=results,
            total_docs_deduplicated=sum(1 for x in results if x.blocks_deduped),
            total_blocks_deduped=sum(x.blocks_deduped for x in results),
        )
    first = req.contexts[0][0] if req.contexts[0] else None
    return ReorderResponse(
        mode=r.mode,
        input_type="string" if isinstance(first, str) else "integer",
        num_contexts=len(req.contexts),
        num_groups=len(r.groups),
        groups=r.groups,
        reordered_contexts=r.reordered,
        original_indices=r.order,
        request_ids=r.request_ids or None,
        stats=ReorderStats(
            planning_ms=round(1000 * r.planning_seconds, 3),
            total_tokens=r.total_tokens,
            cached_tokens_estimate=sum(r.cached_tokens),
            live_requests=sum(len(x.pilot.index) for x in reps),
        ),
        deduplication=dedup,
        scheduled_contexts=r.reordered if schedule else None,
        replicas=[reps[p].name for p in out.placed] if routed else None,
    )


def _chain(st: ServerState, parents: list[str | None] | None, n: int) -> list[str]:
    """Conversations by parent request id (0.5.0 style): none given means
    every context starts one; otherwise one parent (or null) per context."""
    if parents is None:
        parents = [None] * n
    elif len(parents) != n:
        raise unprocessable(["parent_request_ids"], f"needs one entry per context ({n}), got {len(parents)}")
    return st.pilot.conversations_for(parents)


def _replica(st: ServerState, ref: str, loc: list[Any]) -> Replica:
    """The replica a request names; 422 naming the field if unknown."""
    found = st.replicas.find(ref)
    if found is None:
        raise unprocessable(loc, f"no replica {ref!r}; known: {', '.join(st.replicas.names())}")
    return found


@router.post("/reorder", response_model=ReorderResponse, response_model_exclude_none=True)
async def reorder(req: ReorderRequest, st: ServerState = Depends(get_state)) -> ReorderResponse:
    """Reorder blocks within each context and the contexts themselves for
    prefix-cache reuse; stateful unless the server runs ``--stateless``."""
    return await run_in_threadpool(_reorder, st, req, None, False)


@router.post("/build", response_model=ReorderResponse, response_model_exclude_none=True, deprecated=True)
async def build(
    req: ReorderRequest, response: Response, st: ServerState = Depends(get_state)
) -> ReorderResponse:
    """Deprecated alias of ``/reorder``."""
    response.headers["Deprecation"] = "true"
    return await run_in_threadpool(_reorder, st, req, None, False)


@router.post("/schedule", response_model=ReorderResponse, response_model_exclude_none=True, deprecated=True)
async def schedule(
    req: ReorderRequest, response: Response, st: ServerState = Depends(get_state)
) -> ReorderResponse:
    """Deprecated: a stateless ``/reorder`` that also returns ``scheduled_contexts``."""
    response.headers["Deprecation"] = "true"
    return await run_in_threadpool(_reorder, st, req, True, True)


def _deduplicate(st: ServerState, req: DedupRequest) -> DedupResponse:
    # the contexts (size limits included) are checked in the core's one validation walk
    limits = st.limits.context_limits
    if req.hint_template is not None:
        try:
            check_hint_template(req.hint_template)
        except ValueError as e:
            raise unprocessable(["hint_template"], str(e)) from None
    if req.conversation_id is None and req.parent_request_ids is None:
        raise unprocessable(["conversation_id"], "needs conversation_id or parent_request_ids")
    try:
        if req.conversation_id is not None:  # one turn of one conversation
            conversations = [req.conversation_id] * len(req.contexts)
            results = st.pilot.deduplicate(
                req.contexts, req.conversation_id, req.hint_template, limits=limits
            )
        else:  # one turn per context, each continuing its parent's conversation
            ctxs = validate_contexts(req.contexts, allow_empty_context=True, limits=limits)
            conversations = _chain(st, req.parent_request_ids, len(ctxs))
            results = st.pilot.deduplicate_each(ctxs, conversations, req.hint_template)
    except LimitError as e:
        raise st.limits.error(e) from None
    except ContextError as e:
        raise _context_error(e) from None
    # nothing is planned or recorded; the ids only continue the chains
    rids = new_request_ids(len(results))
    st.pilot.link_requests(rids, conversations)
    models = [_dedup_model(r, c, rid) for r, c, rid in zip(results, conversations, rids)]
    return DedupResponse(
        conversation_id=req.conversation_id,
        request_ids=rids,
        results=models,
        total_blocks_deduped=sum(m.blocks_deduped for m in models),
        total_blocks=sum(m.blocks_total for m in models),
    )


@router.post("/deduplicate", response_model=DedupResponse)
async def deduplicate(req: DedupRequest, st: ServerState = Depends(get_state)) -> DedupResponse:
    """Multi-turn dedup: blocks this conversation sent before become reference hints."""
    return await run_in_threadpool(_deduplicate, st, req)


def _evict(st: ServerState, req: EvictRequest) -> EvictResponse:
    st.limits.items(req.request_ids, ["request_ids"])
    reps = st.replicas
    named = (req.replica or "").strip() or None
    # one replica: the notice is about it whatever the hook calls it
    target = _replica(st, named, ["replica"]) if named and reps.multi else None
    ignored = [r for r in req.request_ids if is_health_check(r)]
    ids = list(dict.fromkeys(normalize_request_id(r) for r in req.request_ids if not is_health_check(r)))
    if not reps.multi:
        rep = st.pilot.evict(ids)
        by = {reps.primary.name: len(rep.removed)}
    else:
        rep, by = EvictionReport(), {}
        left = ids
        for x in [target] if target is not None else list(reps):
            assert x is not None
            part = x.pilot.evict(left)
            if part.removed:
                by[x.name] = len(part.removed)
                rep.removed += part.removed
                rep.nodes_removed += part.nodes_removed
                rep.tokens_removed += part.tokens_removed
            left = part.not_found
        rep.not_found = left
        gone = set(rep.removed)
        rep.removed = [i for i in ids if i in gone]  # notice order, whichever replica held them
    st.metrics.evicted.inc(len(rep.removed))
    for name, n in by.items():
        st.metrics.replica_evicted.labels(name).inc(n)
    return EvictResponse(
        removed_count=len(rep.removed),
        removed=rep.removed,
        not_found=rep.not_found,
        normalized_request_ids=ids,
        ignored=ignored,
        nodes_removed=rep.nodes_removed,
        requests_remaining=sum(len(x.pilot.index) for x in reps),
        replica=named,
        removed_by_replica=by if reps.multi else None,
    )


@router.post("/evict", response_model=EvictResponse, response_model_exclude_none=True)
async def evict(req: EvictRequest, st: ServerState = Depends(get_state)) -> EvictResponse:
    """Engine eviction notice (what the hooks call). Ids may carry engine
    decorations (``cmpl-``, ``chatcmpl-``, vLLM suffixes); unknown ids are
    reported in ``not_found``, not errors. ``replica`` (name or URL) says
    which engine evicted; without it each id is dropped from whichever
    replica holds it (ids are globally unique). An unknown ``replica`` is a
    422 with several replicas; with one, the notice is about that one."""
    return await run_in_threadpool(_evict, st, req)


@router.post("/reset", response_model=StatusResponse, response_model_exclude_none=True)
async def reset(st: ServerState = Depends(get_state)) -> StatusResponse:
    """Forget the live index (of every replica), history and all sessions."""
    for x in st.replicas:
        await run_in_threadpool(x.pilot.reset)
    return StatusResponse(status="success", message="index, history and sessions cleared")


@router.get("/sessions", response_model=SessionsResponse)
async def sessions(st: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Conversations tracked for multi-turn dedup (stale ones are dropped)."""
    store = st.pilot.conversations
    items = await run_in_threadpool(st.pilot.sessions)
    return {
        "count": len(items),
        "ttl_seconds": store.ttl,
        "max_sessions": store.max_conversations,
        "sessions": items,
    }


@router.delete(
    "/sessions/{conversation_id}",
    response_model=StatusResponse,
    response_model_exclude_none=True,
    responses={404: {"model": ErrorBody, "description": "no such session"}},
)
async def delete_session(conversation_id: str, st: ServerState = Depends(get_state)) -> StatusResponse:
    if not await run_in_threadpool(st.pilot.end_session, conversation_id):
        raise HTTPException(404, detail=f"no session {conversation_id!r}")
    return StatusResponse(status="success", conversation_id=conversation_id)


@router.get("/requests", response_model=RequestsResponse, response_model_exclude_none=True)
async def requests(
    limit: int = Query(1000, ge=1, le=100_000), st: ServerState = Depends(get_state)
) -> RequestsResponse:
    """Live request ids (oldest first per replica, replicas in order, at
    most ``limit``); with several replicas also the count per replica."""

    def collect() -> dict[str, list[str]]:
        return {x.name: x.pilot.index.request_ids() for x in st.replicas}

    per = await run_in_threadpool(collect)
    ids = [i for lst in per.values() for i in lst]
    return RequestsResponse(
        num_requests=len(ids),
        request_ids=ids[:limit],
        replicas={name: len(lst) for name, lst in per.items()} if st.replicas.multi else None,
    )
