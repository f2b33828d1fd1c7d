"""Every server flag (and its environment variable) checked by its effect."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from contextpilot.server.config import ENV, ServerConfig, parse_config

from support.procs import server, spawn, wait_for

pytest.importorskip("fastapi")


def test_flag_beats_env_beats_default():
    assert parse_config([], {}).port == 8765
    assert parse_config([], {"CONTEXTPILOT_PORT": "9000"}).port == 9000
    assert parse_config(["--port", "9100"], {"CONTEXTPILOT_PORT": "9000"}).port == 9100
    assert parse_config([], {"CONTEXTPILOT_STATELESS_MODE": "true"}).stateless is True
    assert parse_config(["--no-stateless"], {"CONTEXTPILOT_STATELESS_MODE": "1"}).stateless is False
    with pytest.raises(SystemExit):
        parse_config([], {"CONTEXTPILOT_PORT": "lots"})
    with pytest.raises(SystemExit):
        parse_config(["--infer-api-url", "ftp://x"], {})
    # every config field has a flag and an environment variable
    assert set(ENV) == set(ServerConfig.__dataclass_fields__)


def test_stateless_flag_and_env(eng):
    for args, env in ((["--stateless"], None), ([], {"CONTEXTPILOT_STATELESS_MODE": "1"})):
        with server(eng.url, *args, env=env) as s:
            r = httpx.post(s.url + "/reorder", json={"contexts": [[1, 2], [2, 3]]}).json()
            assert r["mode"] == "stateless" and "request_ids" not in r


def test_api_key_flag_and_env(eng):
    for args, env in ((["--api-key", "s3cret"], None), ([], {"CONTEXTPILOT_API_KEY": "s3cret"})):
        with server(eng.url, *args, env=env) as s:
            assert httpx.get(s.url + "/health").status_code == 200  # open
            assert httpx.get(s.url + "/stats").status_code == 401
            assert httpx.get(s.url + "/stats", headers={"Authorization": "Bearer nope"}).status_code == 401
            ok = httpx.get(s.url + "/stats", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200 and ok.json()["config"]["api_key"] == "***"


def test_engine_api_key_is_sent_to_the_engine(eng):
    with server(eng.url, "--engine-api-key", "eng-key") as s:
        httpx.post(s.url + "/v1/completions", json={"prompt": "x"})
    seen = httpx.get(eng.url + "/debug/requests").json()["requests"][-1]
    assert seen["authorization"] == "Bearer eng-key"


def _dedup_run(url: str) -> tuple[httpx.Response, int]:
    passage = "".join(
        f"line {i}: a fairly long line of shared retrieved text number {i}\n" for i in range(60)
    )
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": passage},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again:\n" + passage},
    ]
    r = httpx.post(url + "/v1/chat/completions", json={"messages": msgs})
    return r, int(r.headers.get("x-contextpilot-dedup-chars-saved", 0))


def test_chunk_modulus_and_dedup_passages(eng):
    saved = {}
    for modulus in ("3", "13"):
        with server(eng.url, "--dedup-passages", "--chunk-modulus", modulus) as s:
            r, saved[modulus] = _dedup_run(s.url)
            assert r.status_code == 200 and saved[modulus] > 0
            assert httpx.get(s.url + "/stats").json()["config"]["chunk_modulus"] == int(modulus)
    assert saved["3"] != saved["13"]  # other boundaries, other savings
    with server(eng.url, env={"CONTEXTPILOT_CHUNK_MODULUS": "3", "CONTEXTPILOT_DEDUP_PASSAGES": "1"}) as s:
        assert _dedup_run(s.url)[1] == saved["3"]
    with server(eng.url) as s:  # off by default: byte-transparent
        assert _dedup_run(s.url)[1] == 0


def test_log_level(eng):
    with server(eng.url, "--log-level", "debug") as s:
        httpx.post(s.url + "/reorder", json={"contexts": [[1]]})
        wait_for("the debug access log line", lambda: "POST /reorder" in s.output())
    with server(eng.url) as s:
        httpx.post(s.url + "/reorder", json={"contexts": [[1]]})
        quiet = s
    # the process has exited: its log is complete, so the absence means something
    assert "POST /reorder" not in quiet.output()


def test_capacity_and_ttl(eng):
    with server(eng.url, "--capacity-tokens", "300") as s:
        for i in range(20):
            httpx.post(s.url + "/reorder", json={"contexts": [[f"text block number {i} " * 8]]})
        st = httpx.get(s.url + "/stats").json()["index_stats"]
        assert st["capacity_tokens"] == 300 and 0 < st["index_tokens"] <= 300
    # No upper bound on how fast this machine is: an entry may only be gone
    # once ttl seconds passed since its last use (before t0 + elapsed), and
    # must be gone after sleeping ttl past the last use.
    ttl = 2.0
    with server(eng.url, "--ttl", str(ttl)) as s:
        t0 = time.monotonic()
        assert httpx.post(s.url + "/reorder", json={"contexts": [[1, 2]]}).json()["mode"] == "initial"
        second = httpx.post(s.url + "/reorder", json={"contexts": [[1, 3]]}).json()["mode"]
        if second == "initial":  # expired in between: legal only if ttl had passed
            assert time.monotonic() - t0 >= ttl, "index entry expired before its ttl"
        else:
            assert second == "incremental"
        time.sleep(ttl + 0.2)  # measured from after the last use's answer
        assert httpx.post(s.url + "/reorder", json={"contexts": [[1, 4]]}).json()["mode"] == "initial"


def test_session_ttl_and_cap(eng):
    # the cap, with a ttl no loaded machine gets near
    with server(eng.url, "--session-ttl", "600", "--max-sessions", "2") as s:
        for c in ("a", "b", "c"):
            httpx.post(s.url + "/deduplicate", json={"contexts": [["x"]], "conversation_id": c})
        sessions = httpx.get(s.url + "/sessions").json()
        assert [x["conversation_id"] for x in sessions["sessions"]] == ["b", "c"]
        assert sessions["ttl_seconds"] == 600 and sessions["max_sessions"] == 2
    # the ttl: gone no earlier than ttl after its last use, and gone eventually
    # (the exact expiry is tested with an injected clock in test_sessions / test_dedup)
    ttl = 1.0
    with server(eng.url, "--session-ttl", str(ttl)) as s:
        t0 = time.monotonic()
        httpx.post(s.url + "/deduplicate", json={"contexts": [["x"]], "conversation_id": "a"})
        assert httpx.get(s.url + "/sessions").json()["ttl_seconds"] == ttl
        wait_for("the session to expire", lambda: httpx.get(s.url + "/sessions").json()["count"] == 0)
        assert time.monotonic() - t0 >= ttl, "session expired before its ttl"


def _blackhole():
    """A port whose listen queue is full: connecting to it hangs."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    for _ in range(4):  # the kernel queues backlog + 1; fill it
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(lsock.getsockname())
        fillers.append(c)
    return lsock, fillers


def test_engine_connect_timeout_bounds_a_hanging_engine():
    lsock, fillers = _blackhole()
    try:
        url = f"http://127.0.0.1:{lsock.getsockname()[1]}"
        with server(url, "--engine-connect-timeout", "0.5") as s:
            t0 = time.perf_counter()
            r = httpx.post(s.url + "/v1/completions", json={"prompt": "x"}, timeout=30)
            took = time.perf_counter() - t0
            assert r.status_code == 503 and r.json()["error"]["type"] == "engine_unavailable"
            # at least the connect timeout; far below the client's 30 s, which a
            # server without a connect timeout would reach (the port never accepts)
            assert 0.4 < took < 15
            assert httpx.get(s.url + "/stats").json()["config"]["engine_connect_timeout"] == 0.5
    finally:
        for c in fillers:
            c.close()
        lsock.close()


def test_passthrough(eng):
    with server(eng.url, "--passthrough") as s:
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "x y"})
        assert r.status_code == 200 and "x-contextpilot-request-id" not in r.headers
        seen = httpx.get(eng.url + "/debug/requests").json()["requests"][-1]
        assert seen["rid"] is None and seen["x_request_id"] is None
        assert httpx.get(s.url + "/requests").json()["num_requests"] == 0


def test_max_body_bytes(eng):
    with server(eng.url, "--max-body-bytes", "1000") as s:
        big = {"contexts": [["x" * 2000]]}
        assert httpx.post(s.url + "/reorder", json=big).status_code == 413
        assert httpx.post(s.url + "/reorder", json={"contexts": [["x"]]}).status_code == 200


def test_host_warns_when_exposed_without_key(eng):
    with spawn("contextpilot.server.http_server", "--host", "0.0.0.0", "--infer-api-url", eng.url) as s:
        assert httpx.get(s.url + "/health").status_code == 200
        assert "without --api-key" in s.output()
