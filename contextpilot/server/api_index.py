"""Index endpoints: /reorder (and its deprecated aliases), /deduplicate,
/evict, /reset, /sessions, /requests. Planning runs in a worker thread so
the event loop never blocks; the pilot's lock makes concurrent calls safe."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from starlette.concurrency import run_in_threadpool

from contextpilot.core.blocks import ContextError
from contextpilot.core.dedup import DedupResult, check_hint_template
from contextpilot.core.ids import is_health_check, normalize_request_id
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
    st.limits.contexts(req.contexts)
    conversations: list[str] | None = None
    if req.deduplicate:
        if req.conversation_ids is not None:
            if len(req.conversation_ids) != len(req.contexts):
                raise unprocessable(["conversation_ids"], "needs one conversation id per context")
            conversations = list(req.conversation_ids)
        elif req.conversation_id is not None:
            conversations = [req.conversation_id] * len(req.contexts)
        else:
            raise unprocessable(["conversation_id"], "deduplicate needs conversation_id or conversation_ids")
        if req.hint_template is not None:
            try:
                check_hint_template(req.hint_template)
            except ValueError as e:
                raise unprocessable(["hint_template"], str(e)) from None
    t0 = time.perf_counter()
    try:
        r = st.pilot.reorder_detailed(req.contexts, stateless=stateless)
    except ContextError as e:
        raise _context_error(e) from None
    st.planning.observe(time.perf_counter() - t0)
    st.planned.inc(len(req.contexts))
    dedup = None
    if conversations is not None:
        results = []
        for j, i in enumerate(r.order):
            (res,) = st.pilot.deduplicate([r.reordered[j]], conversations[i], req.hint_template)
            results.append(_dedup_model(res, conversations[i], r.request_ids[j] if r.request_ids else None))
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
            live_requests=len(st.pilot.index),
        ),
        deduplication=dedup,
        scheduled_contexts=r.reordered if schedule else None,
    )


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
    st.limits.contexts(req.contexts)
    if req.hint_template is not None:
        try:
            check_hint_template(req.hint_template)
        except ValueError as e:
            raise unprocessable(["hint_template"], str(e)) from None
    try:
        results = st.pilot.deduplicate(req.contexts, req.conversation_id, req.hint_template)
    except ContextError as e:
        raise _context_error(e) from None
    except ValueError as e:
        raise unprocessable(["hint_template"], str(e)) from None
    models = [_dedup_model(r, req.conversation_id, None) for r in results]
    return DedupResponse(
        conversation_id=req.conversation_id,
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
    ignored = [r for r in req.request_ids if is_health_check(r)]
    ids = list(dict.fromkeys(normalize_request_id(r) for r in req.request_ids if not is_health_check(r)))
    rep = st.pilot.evict(ids)
    st.evicted.inc(len(rep.removed))
    return EvictResponse(
        removed_count=len(rep.removed),
        removed=rep.removed,
        not_found=rep.not_found,
        normalized_request_ids=ids,
        ignored=ignored,
        nodes_removed=rep.nodes_removed,
        requests_remaining=len(st.pilot.index),
    )


@router.post("/evict", response_model=EvictResponse)
async def evict(req: EvictRequest, st: ServerState = Depends(get_state)) -> EvictResponse:
    """Engine eviction notice (what the hooks call). Ids may carry engine
    decorations (``cmpl-``, ``chatcmpl-``, vLLM suffixes); unknown ids are
    reported in ``not_found``, not errors."""
    return await run_in_threadpool(_evict, st, req)


@router.post("/reset", response_model=StatusResponse, response_model_exclude_none=True)
async def reset(st: ServerState = Depends(get_state)) -> StatusResponse:
    """Forget the live index, history and all sessions."""
    await run_in_threadpool(st.pilot.reset)
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


@router.get("/requests", response_model=RequestsResponse)
async def requests(
    limit: int = Query(1000, ge=1, le=100_000), st: ServerState = Depends(get_state)
) -> RequestsResponse:
    """Live request ids (oldest first, at most ``limit``)."""
    ids = await run_in_threadpool(st.pilot.index.request_ids)
    return RequestsResponse(num_requests=len(ids), request_ids=ids[:limit])
