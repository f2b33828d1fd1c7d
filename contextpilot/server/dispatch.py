"""Sending one client request to an engine replica: route it (recording it
in the chosen replica's index), run it with failover, hand the answer back
with the replica named, and keep the replica's in-flight count until the
answer (or its stream) ends. Shared by the proxy routes
(:mod:`~contextpilot.server.api_proxy`) and the OpenAI passthrough
(:mod:`~contextpilot.server.api_passthrough`).

Invariant: a request id is live in at most one replica's index, also
across failovers (it moves with the request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from contextpilot.core.blocks import default_token_counter
from contextpilot.server import failover
from contextpilot.server.replicas import Replica
from contextpilot.server.router import Lease
from contextpilot.server.state import ServerState

__all__ = ["REPLICA_HEADER", "released", "reroute_request", "route", "send_routed"]

#: names the replica (or ``fallback``) that answered, with several replicas
REPLICA_HEADER = "X-ContextPilot-Replica"


def route(st: ServerState, blocks: list[str], rid: str | None) -> tuple[Replica, Lease]:
    """Choose the replica, record the request in its index (unless
    ``rid`` is None: passthrough), count it in flight there."""
    reps, router = st.replicas, st.replicas.router
    if not reps.multi:
        if blocks and rid is not None:
            st.pilot.record(blocks, rid)
        return reps.primary, router.acquire(0, sum(map(default_token_counter, blocks)), "single")
    held = reps.holding(rid) if rid is not None else None
    if held is not None and not router.is_down(held.position):  # planned for this replica's cache
        if blocks:
            held.pilot.record(blocks, rid)
        return held, router.acquire(held.position, sum(map(default_token_counter, blocks)), "sticky")
    routed = reroute_request(st, blocks, rid, set())
    assert routed is not None
    return routed


def reroute_request(
    st: ServerState, blocks: list[str], rid: str | None, tried: set[int]
) -> tuple[Replica, Lease] | None:
    """Route among the replicas not yet tried: up ones first, then (when
    no fallback engine is set) ones marked down, as a mark may be stale;
    None when none is left (the fallback's turn, if any). The id moves
    with the request: it is dropped from the index of the replica that
    held it (counted there as an engine eviction: that engine does not
    hold it) and recorded on the new one."""
    reps, router = st.replicas, st.replicas.router
    if tried and not router.available(tried) and (reps.fallback is not None or len(tried) >= len(reps)):
        return None  # the fallback's turn, or nothing left
    if rid is not None:
        held = reps.holding(rid)
        if held is not None:
            held.pilot.evict([rid])
    if not blocks or rid is None:
        d, lease = router.route(None, sum(map(default_token_counter, blocks)), exclude=tried)
    else:
        keys, tokens = reps.keys(blocks)
        d, lease = router.route(router.sequence_hits(keys), sum(tokens), exclude=tried)
    replica = reps[d.replica]
    if blocks and rid is not None:
        replica.pilot.record(blocks, rid)
    assert lease is not None
    return replica, lease


async def released(chunks: AsyncIterator[Any], lease: Lease) -> AsyncIterator[Any]:
    """A relayed stream that ends the replica's in-flight count when it ends."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        lease.release()


async def send_routed(
    st: ServerState,
    replica: Replica,
    lease: Lease,
    attempt: failover.Attempt,
    *,
    safe: bool,
    blocks: list[str],
    rid: str | None,
    extra: dict[str, str],
) -> failover.Outcome:
    """Run ``attempt`` on ``replica`` with failover (see
    :mod:`contextpilot.server.failover`); the answer carries ``extra``
    headers plus the replica that answered (with several replicas, or when
    the fallback engine did). The lease ends with the answer (or stream)."""

    async def reroute(tried: set[int]) -> tuple[Replica, Lease] | None:
        if not st.replicas.multi:
            return None
        return await run_in_threadpool(reroute_request, st, blocks, rid, tried)

    out = await failover.forward(st, replica, lease, attempt, reroute, safe)
    resp = out.response
    if out.replica is not None and out.error is None:
        st.metrics.replica_proxied.labels(out.replica.name).inc()
    if out.lease is not None:
        if isinstance(resp, StreamingResponse):
            resp.body_iterator = released(resp.body_iterator, out.lease)
        else:
            out.lease.release()
    headers = dict(extra)
    if out.replica is None:
        headers[REPLICA_HEADER] = failover.FALLBACK
    elif st.replicas.multi:
        headers[REPLICA_HEADER] = out.replica.name
    if headers:
        resp.headers.update(headers)
    return out
