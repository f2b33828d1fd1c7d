"""The shared eviction notifier against a real contextpilot server process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from contextpilot.hooks.notifier import EvictionNotifier, get_notifier

from support.procs import free_port, server, silent_listener, wait_for

DEAD_ENGINE = "http://127.0.0.1:9"  # the proxy is not used here


def _live_ids(url: str, n: int, headers: dict[str, str] | None = None) -> list[str]:
    contexts = [[f"doc-{i}", f"doc-{i + 1}", "shared"] for i in range(n)]
    r = httpx.post(url + "/reorder", json={"contexts": contexts}, headers=headers, timeout=10)
    r.raise_for_status()
    return r.json()["request_ids"]


def _live_count(url: str, headers: dict[str, str] | None = None) -> int:
    return httpx.get(url + "/stats", headers=headers, timeout=10).json()["index_stats"]["live_requests"]


def test_evictions_reach_the_index_in_batches_with_engine_decorations():
    with server(DEAD_ENGINE) as srv:
        ids = _live_ids(srv.url, 40)
        n = EvictionNotifier(srv.url, batch_size=16)
        try:
            # engines decorate ids; health checks and blanks are never sent
            decorated = [f"chatcmpl-{r}" for r in ids[:10]] + [f"{r}-0-deadbeef" for r in ids[10:30]]
            assert n.notify(decorated + ["HEALTH_CHECK_1", "  ", ids[0]]) == 31
            assert n.flush(10)
            s = n.stats()
            # two batches of <= 16: ids[0..15], then ids[16..29] + ids[0] again (not found by then)
            assert s["sent"] == 31
            assert s["batches"] >= 2 and s["failed"] == 0 and s["pending"] == 0
            assert _live_count(srv.url) == 10
            left = set(httpx.get(srv.url + "/requests", timeout=10).json()["request_ids"])
            assert left == set(ids[30:])
        finally:
            n.close()


def test_index_down_never_blocks_and_memory_stays_bounded():
    # the sender is parked on a listener that accepts and never answers, so
    # nothing leaves the queue while notify runs: what notify queues and drops
    # is exact, and notify returning at all shows it does not wait on the POST
    lsock, url = silent_listener()
    n = EvictionNotifier(
        url,
        max_queue=1000,
        batch_size=100,
        max_retries=0,
        timeout=120,  # far longer than the test: a notify that waited on it would time the test out
        flush_interval=0,
    )
    try:
        assert n.notify(["req-first"]) == 1
        wait_for("the sender to take the first batch", lambda: n.stats()["pending"] == 0)
        queued = [n.notify([f"req-{i:016x}" for i in range(j, j + 500)]) for j in range(0, 5000, 500)]
        # 5000 ids offered while the sender is stuck: the queue takes 1000, drops the rest
        assert queued == [500, 500] + [0] * 8
        s = n.stats()
        assert s["pending"] == 1000 and s["dropped_full"] == 4000 and s["sent"] == 0
        lsock.close()  # the index "dies": the stuck POST and every later one fail at once
        assert n.flush(60)
        s = n.stats()
        assert s["failed"] == 1001 and s["dropped_full"] == 4000 and s["sent"] == 0
    finally:
        lsock.close()
        n.close()


def test_hanging_index_does_not_block_notify():
    lsock, url = silent_listener()
    try:
        n = EvictionNotifier(url, timeout=0.5, max_retries=0, flush_interval=0)
        n.notify(["req-a"])
        wait_for("the sender to be stuck in its POST", lambda: n.stats()["pending"] == 0)
        # 1000 notifies while the POST hangs: all queued, none waited for it
        assert sum(n.notify([f"req-{i}"]) for i in range(1000)) == 1000
        assert n.stats()["pending"] == 1000 and n.stats()["failed"] == 0
        assert n.flush(30)
        assert n.stats()["failed"] == 1001
        n.close()
    finally:
        lsock.close()


def test_retries_until_the_index_comes_up():
    port = free_port()
    n = EvictionNotifier(f"http://127.0.0.1:{port}", max_retries=8, backoff=0.2, max_backoff=1.0)
    try:
        n.notify(["req-0000000000000001"])  # unknown to the index: reported not_found, still delivered
        wait_for("a retry", lambda: n.stats()["retries"] >= 1)
        with server(DEAD_ENGINE, port=port):
            assert n.flush(20)
        s = n.stats()
        assert s["sent"] == 1 and s["failed"] == 0
    finally:
        n.close()


def test_wrong_api_key_is_not_retried():
    with server(DEAD_ENGINE, "--api-key", "s3cret") as srv:
        auth = {"Authorization": "Bearer s3cret"}
        ids = _live_ids(srv.url, 3, auth)
        bad = EvictionNotifier(srv.url, api_key="wrong", backoff=60, max_backoff=60)
        good = EvictionNotifier(srv.url, api_key="s3cret")
        try:
            bad.notify(ids[:1])
            assert bad.flush(30)  # a 401 is final: no 60 s backoff
            assert bad.stats()["rejected"] == 1 and bad.stats()["retries"] == 0
            assert _live_count(srv.url, auth) == 3
            good.notify(ids)
            assert good.flush(10)
            assert _live_count(srv.url, auth) == 0
        finally:
            bad.close()
            good.close()


def test_close_sends_what_is_queued():
    with server(DEAD_ENGINE) as srv:
        ids = _live_ids(srv.url, 5)
        n = EvictionNotifier(srv.url, flush_interval=120)  # would wait 120 s for a fuller batch
        n.notify(ids)
        t0 = time.perf_counter()
        n.close(60)
        assert time.perf_counter() - t0 < 60  # close() cut the 120 s wait short
        assert n.stats()["sent"] == 5
        assert n.notify(["req-late"]) == 0  # closed
        assert _live_count(srv.url) == 0


def test_thread_safe_notify_from_many_threads():
    with server(DEAD_ENGINE) as srv:
        ids = _live_ids(srv.url, 200)
        n = EvictionNotifier(srv.url, batch_size=32)
        chunks = [ids[i::8] for i in range(8)]
        threads = [threading.Thread(target=lambda c=c: [n.notify([r]) for r in c]) for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            assert n.flush(20)
            assert n.stats()["sent"] == 200
            assert _live_count(srv.url) == 0
        finally:
            n.close()


def test_get_notifier_from_environment():
    assert get_notifier({}) is None
    n = get_notifier({"CONTEXTPILOT_INDEX_URL": "http://127.0.0.1:1/", "CONTEXTPILOT_REPLICA": "gpu-3"})
    assert n is not None and n.url == "http://127.0.0.1:1/evict" and n.replica == "gpu-3"
    assert get_notifier({"CONTEXTPILOT_INDEX_URL": "http://127.0.0.1:1"}) is n
    with pytest.raises(ValueError):
        EvictionNotifier("localhost:8765")


def test_import_is_light_and_child_after_fork_sends_its_own():
    # importing the notifier must not pull numpy/scipy/httpx into an engine process
    code = (
        "import sys, contextpilot.hooks.notifier;"
        "print(sorted(m for m in ('numpy','scipy','httpx','fastapi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    with server(DEAD_ENGINE) as srv:
        ids = _live_ids(srv.url, 2)
        n = EvictionNotifier(srv.url)
        n.notify([ids[0]])
        assert n.flush(10)
        pid = os.fork()
        if pid == 0:  # child: queue state is its own, a fresh sender thread delivers
            ok = n.notify([ids[1]]) == 1 and n.flush(10) and n.stats()["sent"] == 2
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _live_count(srv.url) == 0
        n.close()


def test_backoff_and_flush_deadlines_run_on_the_injected_clock():
    # a frozen clock holds a 1000 s back-off however much real time passes;
    # moving it past the deadline releases the retry at once (no coalescing
    # window: on a frozen clock it would never end either)
    now = [0.0]
    port = free_port()
    n = EvictionNotifier(
        f"http://127.0.0.1:{port}",
        max_retries=3,
        backoff=1000,
        max_backoff=1000,
        flush_interval=0,
        clock=lambda: now[0],
    )
    try:
        n.notify(["req-0000000000000001"])
        wait_for("the first failed try", lambda: n.stats()["retries"] == 1)
        with server(DEAD_ENGINE, port=port):
            time.sleep(1.0)  # real time passes; the injected clock does not
            s = n.stats()
            assert s["retries"] == 1 and s["sent"] == 0 and s["pending"] == 0
            now[0] += 1000
            wait_for("the retry once the clock passed the back-off", lambda: n.stats()["sent"] == 1)
            assert n.flush(5) and n.stats()["failed"] == 0
    finally:
        n.close()


def test_flush_timeout_is_measured_on_the_injected_clock():
    # the sender is parked on a listener that never answers; a clock that
    # moves 10 s per reading ends flush(5) on its first check, without a real wait
    ticks = iter(range(0, 10**9, 10))
    lsock, url = silent_listener()
    n = EvictionNotifier(
        url,
        timeout=120,
        max_retries=0,
        flush_interval=0,
        clock=lambda: float(next(ticks)),
    )
    try:
        n.notify(["req-a"])
        wait_for("the sender to be stuck in its POST", lambda: n.stats()["pending"] == 0)
        assert n.flush(5) is False
        assert n.stats()["sent"] == 0
    finally:
        lsock.close()
        n.close()
