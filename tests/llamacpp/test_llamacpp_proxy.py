"""The llama.cpp proxy as a real process, between a real contextpilot server
and a stand-in speaking llama-server's native protocol (contextpilot/sim/llama_server.py).
The same path on the real llama-server: tests/llamacpp/test_llamacpp_real.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from support.llamacpp_chain import LONG, chat, fake, live, proxy, send, stack, stats, wait_live
from support.procs import Proc, free_port, server, silent_listener, wait_for

DEAD = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def one_slot() -> Iterator[tuple[Proc, Proc, Proc]]:
    # polling on: it must never undo what the answers taught the proxy
    with stack("--slots", "1", SLOTS_POLL_INTERVAL="0.1") as procs:
        yield procs


@pytest.fixture(scope="module")
def fake_and_proxy() -> Iterator[tuple[Proc, Proc]]:
    with fake("--slots", "1", "--delay-ms", "20") as eng, proxy(eng.url) as prx:
        yield eng, prx


def test_replaced_request_is_evicted_from_the_index_and_prefixes_are_kept(one_slot):
    _, prx, srv = one_slot
    before = stats(prx)
    a = send(srv.url, chat("You answer about apples. " + LONG, "first question"))
    # the next turn of the same conversation extends a's prompt: a stays cached
    b = send(srv.url, chat("You answer about apples. " + LONG, "first question", "ok", "second"))
    assert wait_live(srv.url, {a, b}, {a, b}) == {a, b}
    # another conversation takes the only slot: both are gone
    c = send(srv.url, chat("Different system prompt. " + LONG, "hello"))
    assert wait_live(srv.url, {c}, {a, b, c}) == {c}
    after = stats(prx)
    assert after["tracking"]
    assert after["evictions"]["reported"] - before["evictions"]["reported"] == 2
    assert after["slots"]["0"]["request_ids"] == [c]
    assert after["requests"]["/v1/chat/completions"] - before["requests"]["/v1/chat/completions"] == 3
    assert 0 < after["reuse"]["reused_tokens"] < after["reuse"]["prompt_tokens"]
    assert after["evictions"]["notifier"]["sent"] >= 2 and after["evictions"]["notifier"]["failed"] == 0


def test_foreign_use_of_a_slot_is_found_by_polling(one_slot):
    eng, prx, srv = one_slot
    before = stats(prx)
    a = send(srv.url, chat("Polled. " + LONG, "q"))
    # two whole polls after a's answer (the first may have started before it)
    polls = stats(prx)["poll"]["polls"]
    wait_for("two slot polls", lambda: stats(prx)["poll"]["polls"] >= polls + 2)
    assert live(srv.url) & {a} == {a}
    # a client talking to llama-server directly overwrites the slot
    r = httpx.post(eng.url + "/completion", json={"prompt": "something else entirely", "n_predict": 1})
    assert r.status_code == 200
    assert wait_live(srv.url, set(), {a}) == set()
    after = stats(prx)
    assert after["evictions"]["by_poll"] - before["evictions"]["by_poll"] == 1
    assert after["tracker"]["foreign_tasks"] - before["tracker"]["foreign_tasks"] == 1
    assert after["poll"]["polls"] > 0 and after["poll"]["last_error"] is None


def test_request_the_engine_refuses_is_dropped_from_the_index(one_slot):
    _, prx, srv = one_slot
    held = stats(prx)["slots"]["0"]["request_ids"]
    r = httpx.post(
        srv.url + "/v1/chat/completions",
        json={"messages": chat("x" * 5000, "y"), "max_tokens": 1},  # over the engine's context
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "exceed_context_size_error"
    rid = r.headers["x-contextpilot-request-id"]
    # recorded by the server, never cached by the engine: the proxy says so; the slot is untouched
    assert wait_live(srv.url, set(), {rid}) == set()
    assert stats(prx)["slots"]["0"]["request_ids"] == held


def test_each_slot_is_tracked_on_its_own():
    with stack("--slots", "2") as (_, prx, srv):
        a = send(srv.url, chat("Alpha. " + LONG, "q"))
        b = send(srv.url, chat("Bravo. " + LONG, "q"))
        c = send(srv.url, chat("Charlie. " + LONG, "q"))  # LRU: a's slot
        assert wait_live(srv.url, {b, c}, {a, b, c}) == {b, c}
        d = send(srv.url, chat("Bravo. " + LONG, "q", "a", "q2"), stream=True)  # b's slot, extends b
        e = send(srv.url, chat("Echo. " + LONG, "q"))  # LRU: c's slot
        assert wait_live(srv.url, {b, d, e}, {a, b, c, d, e}) == {b, d, e}
        held = sorted(sorted(s["request_ids"]) for s in stats(prx)["slots"].values())
        assert held == sorted([sorted([b, d]), [e]])


def test_engine_down_means_dropped_from_the_index():
    port = free_port()
    with proxy(DEAD, f"http://127.0.0.1:{port}") as prx, server(prx.url, port=port) as srv:
        t0 = time.perf_counter()
        r = httpx.post(
            srv.url + "/v1/chat/completions", json={"messages": chat("x", "y"), "max_tokens": 1}, timeout=30
        )
        assert r.status_code == 502 and r.json()["error"]["type"] == "engine_unreachable"
        assert time.perf_counter() - t0 < 10
        assert httpx.get(prx.url + "/health", timeout=10).status_code == 503
        assert wait_live(srv.url, set(), {r.headers["x-contextpilot-request-id"]}) == set()


def test_metrics_only_proxy_speaks_openai_and_native(fake_and_proxy):
    _, prx = fake_and_proxy
    httpx.post(prx.url + "/reset", timeout=10)
    r = httpx.post(prx.url + "/v1/completions", json={"prompt": "hello world", "max_tokens": 3}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["object"] == "text_completion"
    assert body["id"] == "cmpl-" + r.headers["x-contextpilot-request-id"]
    assert body["choices"][0]["text"] == "abc" and body["usage"]["prompt_tokens"] == 11
    # token ids, with a given id (normalised)
    r = httpx.post(
        prx.url + "/v1/completions",
        json={"prompt": [3 + b for b in b"hello world!"], "max_tokens": 1, "rid": "cmpl-req-given"},
        timeout=10,
    )
    assert r.headers["x-contextpilot-request-id"] == "req-given"
    assert r.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 11
    # native: the engine's answer passes through unchanged
    r = httpx.post(prx.url + "/completion", json={"prompt": "hello there", "n_predict": 2}, timeout=10)
    native = r.json()
    assert r.content == json.dumps(native, separators=(",", ":")).encode()  # the engine's bytes
    assert native["id_slot"] == 0 and native["timings"]["cache_n"] == 6 and native["content"] == "ab"
    r = httpx.post(
        prx.url + "/completion",
        json={"prompt": "hello there", "n_predict": 2},
        headers={"X-Request-Id": "req-hdr"},
        timeout=10,
    )
    assert r.headers["x-contextpilot-request-id"] == "req-hdr"
    now = stats(prx)
    assert not now["tracking"] and now["evictions"]["notifier"] is None
    assert now["tracker"]["observed"] == 4
    assert now["requests"]["/v1/completions"] == 2 and now["requests"]["/completion"] == 2
    # untracked /v1/* passes through; /health relays the engine's
    assert httpx.get(prx.url + "/v1/models", timeout=10).json()["data"][0]["id"] == "fake"
    assert httpx.get(prx.url + "/health", timeout=10).status_code == 200
    assert httpx.post(prx.url + "/reset", timeout=10).json()["status"] == "success"
    now = stats(prx)
    assert now["tracker"]["observed"] == 0 and now["slots"] == {}


def test_streams_are_translated_or_passed_through(fake_and_proxy):
    _, prx = fake_and_proxy
    observed = stats(prx)["tracker"]["observed"]
    body = {
        "messages": chat("s", "u"),
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    arrivals = []
    with httpx.stream("POST", prx.url + "/v1/chat/completions", json=body, timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line:
                arrivals.append((time.perf_counter(), line))
    events = [line[len("data: ") :] for _, line in arrivals]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "abc" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    # native stream: relayed as is, final event with the slot and timings
    with httpx.stream(
        "POST",
        prx.url + "/completion",
        json={"prompt": "abc", "n_predict": 2, "stream": True},
        timeout=10,
    ) as r:
        native = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["stop"] for e in native] == [False, False, True] and native[-1]["id_slot"] == 0
    after = stats(prx)
    assert after["tracker"]["observed"] - observed == 2 and after["in_flight"] == 0


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/v1/chat/completions", b"not json", ["body"]),
        ("/v1/chat/completions", b"[1, 2]", ["body"]),
        ("/v1/chat/completions", b'{"messages": []}', ["body", "messages"]),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "x", "content": "y"}]}',
            ["body", "messages", 0, "role"],
        ),
        ("/v1/completions", b'{"prompt": ["a", 5]}', ["body", "prompt"]),
        ("/v1/completions", b'{"prompt": "a", "rid": {"x": 1}}', ["body", "rid"]),
        ("/v1/completions", b'{"prompt": "a", "max_tokens": "many"}', ["body", "max_tokens"]),
        ("/completion", b'{"prompt": 5}', ["body", "prompt"]),
    ],
)
def test_bad_input_is_refused_naming_the_field(fake_and_proxy, path, body, loc):
    _, prx = fake_and_proxy
    before = httpx.get(prx.url + "/stats", timeout=10).json()["tracker"]["observed"]
    r = httpx.post(prx.url + path, content=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc
    assert httpx.get(prx.url + "/stats", timeout=10).json()["tracker"]["observed"] == before


def test_stream_is_relayed_while_the_engine_holds_it():
    # the fake holds each stream after its first token until released: a proxy
    # that buffered would never deliver that token (the read times out)
    with fake("--hold") as eng, proxy(eng.url) as prx:
        body = {"messages": chat("s", "u"), "max_tokens": 3, "stream": True}
        with httpx.stream("POST", prx.url + "/v1/chat/completions", json=body, timeout=30) as r:
            lines = (line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: "))
            before = ""  # the text relayed while the engine holds the rest
            while not before:
                delta = json.loads(next(lines))["choices"][0]["delta"]
                before += delta.get("content") or ""
            assert before == "a"  # the first token, alone
            assert httpx.post(eng.url + "/debug/release", timeout=10).status_code == 200
            rest = list(lines)
    after = [json.loads(e) for e in rest[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in after if c["choices"]) == "bc"
    assert rest[-1] == "[DONE]"


def test_hanging_engine_gets_a_bounded_json_error():
    lsock, hanging = silent_listener()
    with lsock, proxy(hanging, LLAMA_TIMEOUT="1") as prx:
        t0 = time.perf_counter()
        r = httpx.post(prx.url + "/completion", json={"prompt": "x"}, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["type"] == "engine_timeout"
        # bounded by LLAMA_TIMEOUT (1 s), far from the client's 30 s a proxy without it would reach
        assert time.perf_counter() - t0 < 15
        assert httpx.get(prx.url + "/stats", timeout=10).json()["errors"]["engine_timeout"] == 1


def test_config_flags_and_environment():
    from contextpilot.llamacpp.proxy import parse_config

    c = parse_config(
        ["--port", "9000"], {"LLAMA_SERVER_URL": "http://e:1/", "CHAT_TEMPLATE_FORMAT": "chatml"}
    )
    assert (c.port, c.llama_server_url, c.chat_template_format, c.index_url) == (
        9000,
        "http://e:1",
        "chatml",
        None,
    )
    c = parse_config(
        [], {"CONTEXTPILOT_INDEX_URL": "http://i:2", "SLOTS_POLL_INTERVAL": "0", "PROXY_PORT": "7"}
    )
    assert (c.index_url, c.slots_poll_interval, c.port) == ("http://i:2", 0.0, 7)
    for argv, env in (
        (["--chat-template-format", "jinja"], {}),
        ([], {"LLAMA_SERVER_URL": "ftp://x"}),
        (["--slots-poll-interval", "-1"], {}),
    ):
        with pytest.raises(SystemExit):
            parse_config(argv, env)
