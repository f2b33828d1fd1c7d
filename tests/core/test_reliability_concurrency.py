"""Stress: 8 threads of mixed reorder / evict / reset / deduplicate (and
record, optimize, stats, snapshot) calls, in-process and over HTTP against
a real server; every call bounded in time (no deadlock), then the live
index's invariant checker.

Sizes: ``CONTEXTPILOT_STRESS_CALLS`` calls per thread (default 500
in-process, a quarter of it over HTTP); the CI step
``.ci/steps/40-fuzz-schemathesis.sh`` runs it with 2,500.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

import httpx

from contextpilot import ContextPilot
from contextpilot.core import snapshot

from support.procs import server

THREADS = 8
CALLS = int(os.environ.get("CONTEXTPILOT_STRESS_CALLS", "500"))
#: no single call may take longer (a deadlock shows up as a call that never returns)
CALL_BOUND = 30.0


class Runner:
    """Runs ``op(rnd, thread)`` ``calls`` times on each of ``threads``
    threads; records errors and the slowest call."""

    def __init__(self, threads: int, calls: int) -> None:
        self.threads, self.calls = threads, calls
        self.errors: list[BaseException] = []
        self.slowest = 0.0
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def run(self, op, deadline: float) -> None:
        def worker(seed: int) -> None:
            rnd = random.Random(seed)
            try:
                for _ in range(self.calls):
                    t0 = time.perf_counter()
                    name = op(rnd, seed)
                    took = time.perf_counter() - t0
                    with self._lock:
                        self.slowest = max(self.slowest, took)
                        self.counts[name] += 1
            except BaseException as e:  # surfaced by the test
                with self._lock:
                    self.errors.append(e)

        ts = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(self.threads)]
        for t in ts:
            t.start()
        end = time.monotonic() + deadline
        for t in ts:
            t.join(timeout=max(0.1, end - time.monotonic()))
        assert not any(t.is_alive() for t in ts), f"a worker is stuck (deadlock?) after {deadline} s"
        assert not self.errors, repr(self.errors[0])
        assert self.slowest < CALL_BOUND, f"a call took {self.slowest:.1f} s"


def _tokens(block: int | str) -> int:
    return 10 + (block if isinstance(block, int) else len(block)) % 7


def _contexts(rnd: random.Random, universe: int = 80) -> list[list[int]]:
    return [rnd.sample(range(universe), rnd.randint(1, 8)) for _ in range(rnd.randint(1, 4))]


def test_in_process_threads_keep_the_index_sound():
    pilot = ContextPilot(capacity_tokens=4000, ttl=30, max_conversations=50, token_counter=_tokens)
    ids: list[str] = []
    ids_lock = threading.Lock()
    stop = threading.Event()

    def housekeeping() -> None:  # what the server does beside requests: expiry and snapshots
        while not stop.is_set():
            pilot.index.expire()
            pilot.sessions()
            snapshot.restore(ContextPilot(), snapshot.capture(pilot))  # a consistent view, always
            time.sleep(0.01)

    def op(rnd: random.Random, thread: int) -> str:
        x = rnd.random()
        if x < 0.5:
            ctxs = _contexts(rnd)
            r = pilot.reorder_detailed(ctxs)
            assert sorted(r.order) == list(range(len(ctxs)))
            for j, i in enumerate(r.order):
                assert Counter(r.reordered[j]) == Counter(ctxs[i])
            with ids_lock:
                ids.extend(r.request_ids)
                del ids[:-2000]
            return "reorder"
        if x < 0.7:
            with ids_lock:
                pick = rnd.sample(ids, min(len(ids), rnd.randint(1, 5)))
            rep = pilot.evict(pick)
            assert set(rep.removed) | set(rep.not_found) == set(pick)
            return "evict"
        if x < 0.85:
            ctx = rnd.sample(range(40), rnd.randint(0, 6))
            (res,) = pilot.deduplicate([ctx], f"conv-{rnd.randrange(80)}")
            assert len(res.docs_with_hints) == len(ctx)
            return "deduplicate"
        if x < 0.87:
            pilot.reset()
            return "reset"
        if x < 0.93:
            pilot.record(rnd.sample(range(80), rnd.randint(1, 6)), f"req-t{thread}-{rnd.randrange(50)}")
            return "record"
        if x < 0.97:
            docs = [f"doc {d}" for d in rnd.sample(range(40), rnd.randint(1, 5))]
            msgs = pilot.optimize(docs, "q?", conversation_id=f"conv-{rnd.randrange(80)}")
            assert msgs[-1]["content"].endswith("q?")
            return "optimize"
        s = pilot.stats()
        assert s["live_requests"] >= 0 and s["conversations"] <= 50
        return "stats"

    keeper = threading.Thread(target=housekeeping, daemon=True)
    keeper.start()
    runner = Runner(THREADS, CALLS)
    try:
        runner.run(op, deadline=600)
    finally:
        stop.set()
        keeper.join(timeout=30)
    assert not keeper.is_alive()
    pilot.index.check()
    assert pilot.index.tokens <= 4000 and len(pilot.conversations) <= 50
    assert sum(runner.counts.values()) == THREADS * CALLS and runner.counts["reset"] > 0
    print(
        f"in-process: {THREADS}x{CALLS} calls {dict(runner.counts)}, slowest {runner.slowest * 1000:.0f} ms"
    )


def test_http_threads_keep_the_server_sound(eng, tmp_path):
    state = tmp_path / "state.json"
    calls = max(50, CALLS // 4)
    args = ("--capacity-tokens", "20000", "--max-sessions", "100", "--state-file", str(state))
    with server(eng.url, *args, "--state-interval", "0.5") as srv:
        ids: list[str] = []
        ids_lock = threading.Lock()
        clients = [httpx.Client(base_url=srv.url, timeout=CALL_BOUND) for _ in range(THREADS)]

        def op(rnd: random.Random, thread: int) -> str:
            c = clients[thread]
            x = rnd.random()
            if x < 0.45:
                ctxs = _contexts(rnd)
                r = c.post("/reorder", json={"contexts": ctxs})
                assert r.status_code == 200, r.text
                body = r.json()
                for j, i in enumerate(body["original_indices"]):
                    assert Counter(body["reordered_contexts"][j]) == Counter(ctxs[i])
                with ids_lock:
                    ids.extend(body["request_ids"])
                    del ids[:-2000]
                return "reorder"
            if x < 0.65:
                with ids_lock:
                    pick = rnd.sample(ids, min(len(ids), rnd.randint(1, 5)))
                r = c.post("/evict", json={"request_ids": [f"chatcmpl-{i}" for i in pick]})
                assert r.status_code == 200 and set(r.json()["normalized_request_ids"]) == set(pick)
                return "evict"
            if x < 0.8:
                docs = [f"passage {d}" for d in rnd.sample(range(40), rnd.randint(1, 6))]
                r = c.post(
                    "/deduplicate", json={"contexts": [docs], "conversation_id": f"c{rnd.randrange(200)}"}
                )
                assert r.status_code == 200, r.text
                return "deduplicate"
            if x < 0.82:
                assert c.post("/reset").status_code == 200
                return "reset"
            if x < 0.92:
                msgs = [{"role": "user", "content": f"question {rnd.randrange(100)}"}]
                r = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 1})
                assert r.status_code == 200 and r.headers["x-contextpilot-request-id"].startswith("req-")
                return "proxy"
            r = c.get("/stats")
            assert r.status_code == 200 and r.json()["index_stats"]["conversations"] <= 100
            return "stats"

        runner = Runner(THREADS, calls)
        try:
            runner.run(op, deadline=900)
        finally:
            for c in clients:
                c.close()
        with httpx.Client(base_url=srv.url, timeout=CALL_BOUND) as c:
            st = c.get("/stats", params={"check": "true"}).json()
            assert st["index_check"] == "ok"
            live = st["index_stats"]["live_requests"]
            assert c.get("/requests", params={"limit": 100_000}).json()["num_requests"] == live
            assert st["index_stats"]["index_tokens"] <= 20000
            assert st["server"]["state_file"]["last_error"] is None
            assert c.get("/health").json()["status"] == "ready"
    # the snapshots written while under load (and at shutdown) are sound too
    restored = ContextPilot(capacity_tokens=20000)
    rep = snapshot.load(state, restored)
    assert rep is not None and rep.requests == live
    restored.index.check()
    print(f"http: {THREADS}x{calls} calls {dict(runner.counts)}, slowest {runner.slowest * 1000:.0f} ms")
