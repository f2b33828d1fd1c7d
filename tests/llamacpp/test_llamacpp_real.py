"""End to end on the real llama-server: contextpilot server -> llama.cpp proxy
-> llama-server (``-np 2 --cache-ram 0``, tiny random-weight GGUF). Requests
go through the contextpilot server's own proxy, so it mints and records their
ids; the proxy learns slots from the engine's answers and reports what the
engine overwrote; the index must drop exactly those ids, and llama-server's
own ``/slots`` must agree. A batch of prompts is tracked per prompt on the
slot each ran on, and ``/reset`` reports every tracked id to the index.

Runs when a built llama-server is found (cache folder, ``$LLAMA_SERVER_BIN``
or PATH). With ``CONTEXTPILOT_ENGINE_TESTS=1`` (CI step
``.ci/steps/31-llama-server.sh``) it builds one when missing and never skips.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from contextpilot.bench.engine import LlamaServer, tiny_model
from contextpilot.bench.tiny_model import text_to_tokens

from support.llamacpp_chain import chat, live, proxy, require_llama_server, send, wait_live
from support.procs import Proc, free_port, server

pytestmark = pytest.mark.llama_server


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LlamaServer, Proc, Proc]]:
    binary = require_llama_server()
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLAMA_SERVER_SLOTS_DEBUG", "1")  # GET /slots then shows each slot's prompt text
        with tiny_model(64, 2) as model, LlamaServer(binary, model, ctx=8192, parallel=2) as engine:
            mp.delenv("LLAMA_SERVER_SLOTS_DEBUG")
            # polling on, fast: it must agree with what the answers say
            with proxy(engine.url, f"http://127.0.0.1:{port}", SLOTS_POLL_INTERVAL="0.2") as prx:
                with server(prx.url, port=port) as srv:
                    yield engine, prx, srv


# long enough that the shared chat-template opening stays under llama-server's
# 0.1 prompt-similarity threshold, so new conversations pick slots by LRU
BODY = " ".join(f"note {i}: the quick brown fox jumps over the lazy dog" for i in range(30))


@pytest.mark.slow
def test_engine_evictions_reach_the_index_exactly(stack):
    engine, prx, srv = stack
    a = send(srv.url, chat("Alpha assistant. " + BODY, "question one"))
    b = send(srv.url, chat("Bravo assistant. " + BODY, "question one"))
    c = send(srv.url, chat("Charlie assistant. " + BODY, "question one"))  # LRU: a's slot
    assert wait_live(srv.url, {b, c}, {a, b, c}) == {b, c}

    # b's conversation goes on (streamed): its slot is chosen by similarity and b's prompt is kept
    d = send(
        srv.url, chat("Bravo assistant. " + BODY, "question one", "an answer", "question two"), stream=True
    )
    e = send(srv.url, chat("Echo assistant. " + BODY, "question one"))  # LRU: c's slot
    assert wait_live(srv.url, {b, d, e}, {a, b, c, d, e}) == {b, d, e}

    # the engine's own view agrees: one slot holds Bravo's second turn, the other Echo
    slots = httpx.get(engine.url + "/slots", timeout=10).json()
    prompts = {s["id"]: s.get("prompt", "").replace("\u2581", " ") for s in slots}  # SPM spaces
    assert len(prompts) == 2
    bravo = next(i for i, p in prompts.items() if "Bravo" in p)
    echo = next(i for i, p in prompts.items() if "Echo" in p)
    assert bravo != echo and "question two" in prompts[bravo]
    assert not any("Alpha" in p or "Charlie" in p for p in prompts.values())
    ours = httpx.get(prx.url + "/stats", timeout=10).json()
    assert sorted(ours["slots"][str(bravo)]["request_ids"]) == sorted([b, d])
    assert ours["slots"][str(echo)]["request_ids"] == [e]
    assert ours["slots"][str(bravo)]["reused_tokens"] > 0  # d reused b's prefix in the engine

    # token-id prompts through /v1/completions: LRU is Bravo's slot, b and d go
    f_tokens = text_to_tokens("Foxtrot: a completely new prompt. " + BODY)
    r = httpx.post(
        srv.url + "/v1/completions", json={"prompt": f_tokens, "max_tokens": 1, "temperature": 0}, timeout=60
    )
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage["prompt_tokens"] == len(f_tokens) and usage["prompt_tokens_details"]["cached_tokens"] == 0
    f = r.headers["x-contextpilot-request-id"]
    assert wait_live(srv.url, {e, f}, {a, b, c, d, e, f}) == {e, f}

    stats = httpx.get(prx.url + "/stats", timeout=10).json()
    assert stats["evictions"]["reported"] == 4  # a, c, b, d: nothing else, nothing twice
    assert stats["evictions"]["by_poll"] == 0 and stats["poll"]["polls"] > 0
    assert stats["evictions"]["notifier"]["sent"] == 4 and stats["evictions"]["notifier"]["failed"] == 0
    assert stats["errors"] == {}
    assert live(srv.url) >= {e, f}

    # a client talking to llama-server directly takes the LRU slot (Echo's): GET /slots polling
    # notices the foreign task and e goes too
    r = httpx.post(
        engine.url + "/completion",
        json={"prompt": text_to_tokens("Golf. " + BODY), "n_predict": 1},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["id_slot"] == echo
    assert wait_live(srv.url, {f}, {a, b, c, d, e, f}) == {f}
    stats = httpx.get(prx.url + "/stats", timeout=10).json()
    assert stats["evictions"]["by_poll"] == 1 and stats["tracker"]["foreign_tasks"] == 1


def test_batched_prompts_are_tracked_per_slot_and_reset_clears_the_index(stack):
    engine, prx, srv = stack
    x = send(srv.url, chat("Xray assistant. " + BODY, "question one"))
    assert x in live(srv.url)

    # a batch of two token prompts straight to the proxy, ids given: llama-server runs each
    # prompt as its own task; new prompts pick slots by LRU, so they take both slots and x goes
    prompts = [text_to_tokens("Yankee. " + BODY), text_to_tokens("Zulu. " + BODY)]
    r = httpx.post(
        prx.url + "/completion",
        json={"prompt": prompts, "n_predict": 1, "rid": ["yankee", "zulu"]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    answers = r.json()
    assert [a["index"] for a in answers] == [0, 1]
    assert [a["tokens_evaluated"] for a in answers] == [len(p) for p in prompts]
    slot_of = {"yankee": answers[0]["id_slot"], "zulu": answers[1]["id_slot"]}
    assert slot_of["yankee"] != slot_of["zulu"]
    ours = httpx.get(prx.url + "/stats", timeout=10).json()
    held = {rid: int(slot) for slot, s in ours["slots"].items() for rid in s["request_ids"]}
    assert held == slot_of  # each prompt on the slot the engine reported, nothing else kept
    engine_prompts = {
        s["id"]: s.get("prompt", "").replace("\u2581", " ")
        for s in httpx.get(engine.url + "/slots", timeout=10).json()
    }
    assert "Yankee" in engine_prompts[slot_of["yankee"]] and "Zulu" in engine_prompts[slot_of["zulu"]]
    assert wait_live(srv.url, set(), {x}) == set()  # x's slot was taken: the index dropped it

    # a request through the contextpilot server takes one slot back: the least recently used
    # one, which depends on which batch prompt finished last (they ran at once), so the test
    # reads which slot z took and expects the other batch prompt to be kept
    z = send(srv.url, chat("Zebra assistant. " + BODY, "question one"))
    assert z in live(srv.url)
    before = httpx.get(prx.url + "/stats", timeout=10).json()
    z_slot = [int(slot) for slot, s in before["slots"].items() if z in s["request_ids"]]
    assert len(z_slot) == 1 and z_slot[0] in slot_of.values()
    kept = [rid for rid, slot in slot_of.items() if slot != z_slot[0]]
    tracked = sorted(rid for s in before["slots"].values() for rid in s["request_ids"])
    assert tracked == sorted([z, *kept]) and len(kept) == 1

    # /reset: every tracked id reported evicted, and the index drops the ones it knew
    out = httpx.post(prx.url + "/reset", timeout=10).json()
    assert out["evicted"] == tracked and out["evicted_count"] == 2
    assert wait_live(srv.url, set(), {z}) == set()
    after = httpx.get(prx.url + "/stats", timeout=10).json()
    # (the /slots poller may have re-listed the engine's slots since, holding nothing)
    assert all(s["request_ids"] == [] for s in after["slots"].values())
    assert after["evictions"]["reported"] == 2
    assert after["latency"]["count"] == 0 and before["latency"]["count"] > 0
