"""Engine faults seen through a real server process: an engine that speaks
garbage, hangs up, truncates, drips bytes forever or never answers gives a
clear JSON error in bounded time, and no connection is left open on either
side. (Engine down / slow / not accepting: tests/server/test_server_e2e.py
and tests/server/test_server_cli.py.)"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time

import httpx
import pytest

from support.procs import server

pytest.importorskip("fastapi")

ENGINE_TIMEOUT = 1.5
#: every failing call must be answered within this many seconds: far above a
#: loaded machine's latency, far below what a server that waits on the engine
#: would take (the fake engine hangs or drips for 60 s; clients give up at 30 s)
BOUND = ENGINE_TIMEOUT + 13.5


class FakeEngine(socketserver.ThreadingTCPServer):
    """Raw TCP 'engine' on 127.0.0.1 misbehaving as ``self.mode`` says;
    counts the connections it has open."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "garbage"
        self.open = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        eng: FakeEngine = self.server  # type: ignore[assignment]
        with eng.lock:
            eng.open += 1
        try:
            self._serve(eng.mode)
        except OSError:
            pass  # the proxy hung up on us: what we want to see
        finally:
            with eng.lock:
                eng.open -= 1

    def _read_request(self) -> None:
        s = self.request
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += s.recv(65536)

    def _wait_for_hangup(self, limit: float, drip: bytes = b"") -> None:
        s = self.request
        s.settimeout(0.2)
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if drip:
                s.sendall(drip)
            try:
                if s.recv(1) == b"":
                    return
            except TimeoutError:
                continue

    def _serve(self, mode: str) -> None:
        s = self.request
        self._read_request()
        if mode == "garbage":
            s.sendall(b"\x00\x01 this is not HTTP at all \xff\r\n\r\n")
        elif mode == "hangup":
            pass
        elif mode == "truncated":
            s.sendall(
                b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"id": '
            )
        elif mode == "bad-json":
            body = b"this is not json {"
            s.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
            )
            s.sendall(body)
        elif mode == "drip":
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n")
            self._wait_for_hangup(60, drip=b" ")
        elif mode == "silent":
            self._wait_for_hangup(60)
        elif mode == "broken-stream":
            s.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                + b"%x\r\n" % 20
                + b'data: {"text":"a"}\n\n'
                + b"\r\n"
            )
            time.sleep(0.2)
        s.shutdown(socket.SHUT_RDWR)


def _sockets(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return n


@pytest.fixture(scope="module")
def setup():
    fake = FakeEngine()
    args = ("--engine-timeout", str(ENGINE_TIMEOUT), "--engine-connect-timeout", "1")
    with server(fake.url, *args) as srv:
        yield fake, srv
    fake.shutdown()
    fake.server_close()


EXPECTED = {
    "garbage": (502, "engine_error"),
    "hangup": (502, "engine_error"),
    "truncated": (502, "engine_error"),
    "drip": (504, "engine_timeout"),
    "silent": (504, "engine_timeout"),
}


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_misbehaving_engine_gives_clear_errors_in_bounded_time(setup, mode):
    fake, srv = setup
    fake.mode = mode
    status, kind = EXPECTED[mode]
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for path, body in (
            ("/v1/completions", {"prompt": "hello"}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ):
            t0 = time.perf_counter()
            r = c.post(path, json=body)
            took = time.perf_counter() - t0
            assert r.status_code == status, r.text
            err = r.json()["error"]
            assert err["type"] == kind and fake.url in err["message"]
            assert took < BOUND, f"{mode}: {took:.1f} s"
            if kind == "engine_timeout":
                assert took > ENGINE_TIMEOUT * 0.8
        # the server itself is fine meanwhile
        assert c.post("/reorder", json={"contexts": [[1, 2], [2, 3]]}).status_code == 200
        metrics = c.get("/metrics").text
        assert f'contextpilot_engine_errors_total{{kind="{kind}"}}' in metrics


def test_engine_body_that_is_not_json_passes_through_unchanged(setup):
    fake, srv = setup
    fake.mode = "bad-json"
    r = httpx.post(srv.url + "/v1/completions", json={"prompt": "x"}, timeout=30)
    assert r.status_code == 200 and r.content == b"this is not json {"  # byte-transparent, no crash
    assert r.headers["x-contextpilot-request-id"].startswith("req-")


def test_stream_broken_mid_way_ends_with_an_error_event(setup):
    fake, srv = setup
    fake.mode = "broken-stream"
    t0 = time.perf_counter()
    with httpx.stream(
        "POST", srv.url + "/v1/completions", json={"prompt": "x", "stream": True}, timeout=30
    ) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert time.perf_counter() - t0 < BOUND
    assert lines[0] == 'data: {"text":"a"}' and '"error"' in lines[-1]


def test_no_connections_leak_on_either_side(setup):
    fake, srv = setup
    pid = srv.popen.pid
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        c.get("/stats")
        before = _sockets(pid)
        for _ in range(3):
            for mode in ("garbage", "hangup", "truncated", "drip", "broken-stream", "bad-json"):
                fake.mode = mode
                c.post("/v1/completions", json={"prompt": "x", "stream": mode == "broken-stream"})
        deadline = time.monotonic() + 30  # far above a loaded machine's close latency
        while (fake.open or _sockets(pid) > before + 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake.open == 0, f"{fake.open} engine connections still open"
        assert _sockets(pid) <= before + 2, (before, _sockets(pid))
