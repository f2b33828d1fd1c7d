"""The llama.cpp proxy's seed contract, as real processes against the stand-in
llama-server (contextpilot/sim/llama_server.py): batched prompts split and tracked one
by one, ``/reset`` reporting every tracked id evicted to a real contextpilot
server, the JSONL request log (``LOG_FILE``) and latency figures in
``/stats``. The batch and ``/reset`` paths on the real llama-server:
tests/llamacpp/test_llamacpp_real.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from contextpilot.llamacpp.latency import LatencyWindow, percentiles

from support.llamacpp_chain import LONG, chat, fake, live, proxy, send, stack, stats, wait_live

RID = "x-contextpilot-request-id"


def test_batched_prompts_are_split_and_each_prompt_tracked():
    with fake("--slots", "2", "--delay-ms", "30") as eng, proxy(eng.url) as prx:
        # native batch with our own ids: llama-server's shape, a list of answers with their index
        r = httpx.post(
            prx.url + "/completion",
            json={"prompt": ["alpha " * 20, [5, 6, 7, 8] * 10], "n_predict": 2, "rid": ["na", "nb"]},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        answers = r.json()
        assert [a["index"] for a in answers] == [0, 1] and r.headers[RID] == "na,nb"
        held = {rid: slot for slot, s in stats(prx)["slots"].items() for rid in s["request_ids"]}
        # each id is held on the slot the engine answered for its prompt
        assert held == {"na": str(answers[0]["id_slot"]), "nb": str(answers[1]["id_slot"])}

        # OpenAI batch, one id given: suffixed per prompt; a choice per prompt, usage summed
        before = stats(prx)["tracker"]["observed"]
        r = httpx.post(
            prx.url + "/v1/completions",
            json={"prompt": ["bravo " * 20, "charlie " * 20, "delta " * 20], "max_tokens": 2, "rid": "ob"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert [c["index"] for c in body["choices"]] == [0, 1, 2]
        assert all(c["text"] for c in body["choices"])
        # the stand-in's tokens are UTF-8 bytes
        assert body["usage"]["prompt_tokens"] == sum(len(f"{w} " * 20) for w in ("bravo", "charlie", "delta"))
        after = stats(prx)
        assert after["tracker"]["observed"] - before == 3 and after["in_flight"] == 0
        now = {rid for s in after["slots"].values() for rid in s["request_ids"]}
        # two slots, three prompts: at most two are still held, and those are among ob-0..2
        assert now and now <= {"na", "nb", "ob-0", "ob-1", "ob-2"} and len(now) <= 2
        assert after["requests"]["/v1/completions"] == 1 and after["requests"]["/completion"] == 1

        # bad batches: named fields, nothing tracked
        for path, bad, loc in (
            ("/completion", {"prompt": ["a", "b"], "stream": True}, ["body", "stream"]),
            ("/v1/completions", {"prompt": ["a", "b"], "rid": ["one"]}, ["body", "rid"]),
            ("/v1/completions", {"prompt": ["a", "b"], "rid": ["same", "same"]}, ["body", "rid"]),
            ("/v1/completions", {"prompt": ["a", 5]}, ["body", "prompt"]),
            ("/completion", {"prompt": ["a"] * 65}, ["body", "prompt"]),
        ):
            r = httpx.post(prx.url + path, json=bad, timeout=10)
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, (bad, r.text)
        assert stats(prx)["tracker"]["observed"] == after["tracker"]["observed"]

        # one prompt the engine refuses: the batch answers with that failure, the other is tracked
        mixed = {"prompt": ["echo " * 20, [7] * 5000], "n_predict": 1, "rid": ["good", "bad"]}
        r = httpx.post(prx.url + "/completion", json=mixed, timeout=30)
        assert r.status_code == 400
        last = stats(prx)
        now = {rid for s in last["slots"].values() for rid in s["request_ids"]}
        assert "good" in now and "bad" not in now
        assert last["tracker"]["observed"] - after["tracker"]["observed"] == 1
        assert last["errors"]["engine_http_400"] == 1 and last["in_flight"] == 0


def test_reset_reports_every_tracked_id_evicted_to_the_index():
    with stack("--slots", "2") as (_, prx, srv):
        # long prompts: the shared template opening stays under the engine's 0.1 similarity
        # threshold, so the second conversation takes the free slot
        a = send(srv.url, chat("Alpha. " + LONG, "q"))
        b = send(srv.url, chat("Bravo. " + LONG, "q"))
        assert wait_live(srv.url, {a, b}, {a, b}) == {a, b}
        held = sorted(rid for s in stats(prx)["slots"].values() for rid in s["request_ids"])
        assert held == sorted([a, b])

        r = httpx.post(prx.url + "/reset", timeout=10)
        assert r.status_code == 200
        out = r.json()
        assert out["evicted"] == held and out["evicted_count"] == 2
        assert wait_live(srv.url, set(), {a, b}) == set()  # the index dropped exactly those
        after = stats(prx)
        assert after["slots"] == {} and after["tracker"]["requests_held"] == 0
        assert after["evictions"]["reported"] == 2 and after["latency"]["count"] == 0

        # a reset with nothing tracked reports nothing; new requests are tracked again
        assert httpx.post(prx.url + "/reset", timeout=10).json()["evicted"] == []
        c = send(srv.url, chat("Charlie. " + LONG, "q"))
        assert c in live(srv.url)
        assert [c] == [rid for s in stats(prx)["slots"].values() for rid in s["request_ids"]]


def test_request_log_is_jsonl_and_stats_carry_latency(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    with fake("--slots", "2", "--delay-ms", "10") as eng, proxy(eng.url, LOG_FILE=str(path)) as prx:
        msgs = chat("You answer briefly. " + "context block " * 20, "first question")
        sent = [send(prx.url, msgs), send(prx.url, msgs), send(prx.url, msgs, stream=True)]
        r = httpx.post(
            prx.url + "/v1/completions", json={"prompt": ["p one", "p two"], "rid": "bt"}, timeout=30
        )
        assert r.status_code == 200
        sent += ["bt-0", "bt-1"]
        refused = httpx.post(prx.url + "/completion", json={"prompt": [7] * 5000, "rid": "big"}, timeout=30)
        assert refused.status_code == 400  # the engine's context limit, relayed
        st = stats(prx)
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) == len(sent) + 1 == st["request_log"]["written"]
    assert sorted(rec["request_id"] for rec in records) == sorted([*sent, "big"])
    keys = {
        "time",
        "request_id",
        "endpoint",
        "status",
        "slot",
        "prompt_tokens",
        "cached_tokens",
        "latency_ms",
    }
    assert all(set(rec) == keys for rec in records)
    by_id = {rec["request_id"]: rec for rec in records}
    assert by_id["big"]["status"] == 400 and by_id["big"]["slot"] is None
    first, second = by_id[sent[0]], by_id[sent[1]]
    assert first["status"] == second["status"] == 200 and first["slot"] in (0, 1)
    # the same prompt again: the engine reused its prefix, and the log says so
    assert first["cached_tokens"] < second["cached_tokens"] < second["prompt_tokens"]
    assert by_id["bt-0"]["endpoint"] == "/v1/completions" and by_id["bt-1"]["prompt_tokens"] > 0
    assert all(rec["latency_ms"] > 0 for rec in records)

    # /stats: the successful requests' latencies, overall and per slot
    lat = st["latency"]
    assert lat["count"] == len(sent)
    assert lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]
    assert sum(s["count"] for s in lat["by_slot"].values()) == len(sent)
    for slot, figures in lat["by_slot"].items():
        assert st["slots"][slot]["latency"] == figures
    ok_latencies = [rec["latency_ms"] for rec in records if rec["status"] == 200]
    assert lat["p99_ms"] == pytest.approx(max(ok_latencies), abs=0.01)


def test_latency_window_is_bounded_and_percentiles_are_nearest_rank():
    samples = [float(x) for x in (13, 2, 8, 21, 5, 34, 1, 3, 55, 1)]

    def nearest_rank(p: int) -> float:  # smallest sample with at least p% of samples at or below it
        return min(x for x in samples if sum(y <= x for y in samples) * 100 >= p * len(samples))

    got = percentiles(samples)
    assert got["count"] == len(samples)
    assert [got[f"p{p}_ms"] for p in (50, 95, 99)] == [nearest_rank(p) for p in (50, 95, 99)]
    assert percentiles([])["p50_ms"] is None

    w = LatencyWindow(window=4, max_slots=2)
    for i, x in enumerate(samples):
        w.add(x, slot=i % 3)
    s = w.summary()
    assert s["count"] == 4 and s["p99_ms"] == max(samples[-4:])  # only the last 4 count
    assert sorted(s["by_slot"]) == ["0", "2"]  # slots 0 and 2 were seen last; slot 1 dropped
    w.clear()
    assert w.summary()["count"] == 0
    with pytest.raises(ValueError):
        LatencyWindow(window=0)
