"""Failover across engine replicas: which failures mark a replica down,
which requests are retried on another one, the fallback engine, and the
background probe that brings replicas back.

Policy, per failure of one attempt (and why):

* **connection refused, or not accepted in time** (``EngineError.reached``
  is False): no byte of the request left this server, so it is retried on
  another replica whatever its method and path, and the replica is marked
  down. A dead engine loses no request.
* **the exchange broke before an answer** (connection reset, server
  disconnected), **or the engine answered 502, 503 or 504**: the replica is
  marked down. The request may have reached the engine, so it is retried
  only when repeating it is *safe*: ``GET``/``HEAD``/``OPTIONS``, and
  ``POST`` to the inference endpoints (:data:`SAFE_POSTS`: completions,
  chat completions, embeddings), whose only effect on an engine is compute
  and cache. Nothing has reached the client yet, so it still sees exactly
  one answer. Other paths (files, batches, fine-tuning, ...) could act twice
  and get the error instead.
* **500**: the engine failed *this* request, which may be the request's
  fault, so the replica stays up; a safe request is still tried elsewhere.
* **our timeout** (504 ``engine_timeout``): never retried and the replica
  stays up. The engine may still be working on it; a retry would double
  its load and the client's wait. A hung engine fails the probe instead.
* anything else (2xx, 4xx, ...): returned as it is.

Each replica is tried at most once per request, replicas up first. When
no replica up is left, the fallback engine (``--fallback-url``, if set)
gets the request under the same rules; without one, the replicas marked
down are tried too (a mark may be stale: a one-off 503, an engine just
restarted), and when none is left the last error goes back to the client.
While every replica is marked down, requests go straight to the fallback.
A replica marked down that answers a request (below 500) is marked up
again at once; otherwise the probe does it. A stream is only ever retried
before its first byte was relayed (error answers are read whole, see
:meth:`EngineClient.send`).

The probe (:func:`watch`) asks every engine's ``/health`` every
``health_interval`` seconds: unreachable marks a replica down, reachable
marks it up again. Cost: one small GET per replica per interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from contextpilot.server.engine_client import EngineClient, EngineError

if TYPE_CHECKING:
    from contextpilot.server.replicas import Replica
    from contextpilot.server.router import Lease
    from contextpilot.server.state import ServerState

__all__ = ["FALLBACK", "SAFE_POSTS", "Outcome", "forward", "is_safe", "judge", "probe_all", "watch"]

log = logging.getLogger("contextpilot.server")

#: the fallback engine's name in headers and metric labels
FALLBACK = "fallback"
#: POST paths whose repetition only costs compute (see the module docstring)
SAFE_POSTS = frozenset({"/v1/completions", "/v1/chat/completions", "/v1/embeddings"})
#: answers that say the engine cannot serve right now
DOWN_STATUSES = frozenset({502, 503, 504})

#: one attempt on one engine: the response to send and, when read whole, its body
Attempt = Callable[[EngineClient], Awaitable[tuple[Response, bytes | None]]]
#: the next replica for a request (not among the tried positions), or None
Reroute = Callable[[set[int]], Awaitable["tuple[Replica, Lease] | None"]]


def is_safe(method: str, path: str) -> bool:
    """May this request run twice on engines without harm?"""
    return method.upper() in ("GET", "HEAD", "OPTIONS") or (method.upper() == "POST" and path in SAFE_POSTS)


def judge(err: EngineError | None, status: int, safe: bool) -> tuple[bool, bool, str]:
    """(retry elsewhere, mark the replica down, reason label) for one attempt."""
    if err is not None:
        if not err.reached:
            return True, True, "unreachable"
        if err.kind == "engine_timeout":
            return False, False, "timeout"
        return safe, True, "broken"
    if status in DOWN_STATUSES:
        return safe, True, f"http_{status}"
    if status == 500:
        return safe, False, "http_500"
    return False, False, "ok"


@dataclass
class Outcome:
    response: Response
    #: the body when read whole (None: streamed, or an error of ours)
    raw: bytes | None
    #: who answered: a replica, or None for the fallback engine
    replica: Replica | None
    #: in flight on ``replica`` until the caller releases it (None: fallback)
    lease: Lease | None
    #: the last attempt's failure when no engine answered
    error: EngineError | None = None


def mark_down(st: ServerState, replica: Replica, reason: str) -> None:
    if st.replicas.router.mark_down(replica.position):
        st.metrics.replica_marked_down.labels(replica.name, reason).inc()
        log.warning("replica %s (%s) marked down: %s", replica.name, replica.url, reason)


def mark_up(st: ServerState, replica: Replica) -> None:
    if st.replicas.router.mark_up(replica.position):
        st.metrics.replica_recovered.labels(replica.name).inc()
        log.info("replica %s (%s) is back up", replica.name, replica.url)


async def forward(
    st: ServerState, replica: Replica, lease: Lease, attempt: Attempt, reroute: Reroute, safe: bool
) -> Outcome:
    """Run ``attempt`` on ``replica``, failing over as the module docstring says."""
    fallback = st.replicas.fallback
    tried: set[int] = set()
    current: Replica | None = replica
    held: Lease | None = lease
    router = st.replicas.router
    if fallback is not None and router.is_down(replica.position) and not router.available():
        # every replica marked down: straight to the fallback (no connect timeout per request)
        lease.release()
        st.metrics.failovers.labels(replica.name, FALLBACK, "marked_down").inc()
        current, held = None, None
    while True:
        client = current.proxy if current is not None else fallback
        assert client is not None
        err: EngineError | None = None
        try:
            resp, raw = await attempt(client)
        except EngineError as e:
            err, resp, raw = e, e.response(), None
            st.metrics.engine_errors.labels(e.kind).inc()
            if current is not None:
                st.metrics.replica_errors.labels(current.name, e.kind).inc()
        retry, down, reason = judge(err, resp.status_code, safe)
        if current is None:  # the fallback answered: nothing left to try
            return Outcome(resp, raw, None, None, err)
        if down:
            mark_down(st, current, reason)
        elif err is None and resp.status_code < 500:
            mark_up(st, current)
        if not retry:
            return Outcome(resp, raw, current, held, err)
        if held is not None:
            held.release()
        tried.add(current.position)
        nxt = await reroute(tried)
        if nxt is None and fallback is None:
            log.warning("no replica left for a request after %s on %s", reason, current.name)
            return Outcome(resp, raw, current, None, err)
        target = nxt[0].name if nxt is not None else FALLBACK
        st.metrics.failovers.labels(current.name, target, reason).inc()
        log.info("request failed over from %s to %s (%s)", current.name, target, reason)
        current, held = nxt if nxt is not None else (None, None)


async def probe_all(st: ServerState, max_age: float = 0.0) -> list[dict[str, Any]]:
    """Probe every replica (fresh unless ``max_age``), mark each down or up
    by the answer; returns the probes in order. The fallback engine is not
    marked (it is only probed by ``/health``)."""
    reps = list(st.replicas)
    probes = await asyncio.gather(*(r.proxy.probe(max_age) for r in reps))
    for r, p in zip(reps, probes):
        if p.get("reachable"):
            mark_up(st, r)
        else:
            mark_down(st, r, "probe")
    return list(probes)


async def watch(st: ServerState, interval: float) -> None:
    """The background probe: forever, every ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        try:
            await probe_all(st)
        except Exception:  # never let the probe die
            log.exception("engine health probe failed")
