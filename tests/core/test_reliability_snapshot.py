"""Snapshots of the live index and sessions: round trip, corrupt files,
atomic writes, bounds after loading, and a real server process restart."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal

import httpx
import pytest

from contextpilot import ContextPilot
from contextpilot.core import snapshot
from contextpilot.core.dedup import DedupLedger
from contextpilot.server.state_file import StateFile

from support.procs import engine, server, wait_for


def _busy_pilot(seed: int = 0, **kw) -> ContextPilot:
    pilot = ContextPilot(capacity_tokens=5000, token_counter=lambda b: 10 + b % 7, **kw)
    rnd = random.Random(seed)
    for _ in range(150):
        ctxs = [rnd.sample(range(60), rnd.randint(1, 8)) for _ in range(rnd.randint(1, 4))]
        ids = pilot.reorder_detailed(ctxs).request_ids
        if rnd.random() < 0.3:
            pilot.evict(ids[:1])
        pilot.deduplicate([[rnd.randrange(30)]], f"conv-{rnd.randrange(6)}")
    return pilot


def _fresh(**kw) -> ContextPilot:
    return ContextPilot(capacity_tokens=5000, token_counter=lambda b: 10 + b % 7, **kw)


def test_round_trip_keeps_index_sessions_and_future_plans(tmp_path):
    a = _busy_pilot()
    path = tmp_path / "state.json"
    size = snapshot.save(path, a)
    assert size == path.stat().st_size and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    b = _fresh()
    rep = snapshot.load(path, b)
    assert rep is not None and rep.requests == len(a.index) > 0 and rep.dropped_by_bounds == 0
    b.index.check()
    assert b.index.request_ids() == a.index.request_ids()
    assert b.stats() == a.stats()
    assert [s["conversation_id"] for s in b.sessions()] == [s["conversation_id"] for s in a.sessions()]
    rnd = random.Random(9)
    for _ in range(20):  # both instances now plan identically
        ctxs = [rnd.sample(range(80), rnd.randint(1, 8)) for _ in range(3)]
        ra, rb = a.reorder_detailed(ctxs), b.reorder_detailed(ctxs)
        assert (ra.reordered, ra.order, ra.cached_tokens) == (rb.reordered, rb.order, rb.cached_tokens)
        da = a.deduplicate([ctxs[0]], "conv-1")[0]
        db = b.deduplicate([ctxs[0]], "conv-1")[0]
        assert da.docs_with_hints == db.docs_with_hints
    # the file holds keys, never block content
    a2 = ContextPilot()
    a2.reorder(["a secret document", "another secret"] for _ in range(1))
    snapshot.save(path, a2)
    assert b"secret" not in path.read_bytes()


def test_missing_file_is_a_first_start(tmp_path):
    assert snapshot.load(tmp_path / "none.json", _fresh()) is None


def _corruptions(data: dict) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [
        ("not an object", [1, 2]),
        ("other format", {**data, "format": "something"}),
        ("future version", {**data, "version": 99}),
        ("bad saved_at", {**data, "saved_at": "yesterday"}),
    ]
    idx = data["index"]
    nodes = [list(n) for n in idx["nodes"]]
    out.append(("parent after child", {**data, "index": {**idx, "nodes": [nodes[1], nodes[0], *nodes[2:]]}}))
    out.append(("orphan block", {**data, "index": {**idx, "nodes": [*nodes, [-1, 123456789, 5, 1, 0.0]]}}))
    bad_tick = [list(n) for n in nodes]
    child = next(i for i, n in enumerate(bad_tick) if n[0] >= 0)
    bad_tick[child][3] = bad_tick[bad_tick[child][0]][3] + 10**6  # a child used after its parent
    out.append(("tick order", {**data, "index": {**idx, "nodes": bad_tick}}))
    out.append(("request on no node", {**data, "index": {**idx, "requests": [["req-x", 10**6]]}}))
    out.append(("negative tokens", {**data, "index": {**idx, "nodes": [[-1, 1, -5, 1, 0.0]]}}))
    out.append(("bad conversation", {**data, "conversations": [["c", 1, 0.0, ["not-a-key"]]]}))
    out.append(("missing recent", {k: v for k, v in data.items() if k != "recent"}))
    return out


def test_corrupt_snapshots_raise_and_leave_the_instance_alone(tmp_path):
    data = snapshot.capture(_busy_pilot())
    target = _busy_pilot(seed=3)
    before = (target.index.request_ids(), target.stats(), target.sessions())
    for what, bad in _corruptions(data):
        with pytest.raises(snapshot.SnapshotError):
            snapshot.restore(target, bad)
        target.index.check()
        assert (target.index.request_ids(), target.stats()) == before[:2], what
    for raw in (b"", b"{", b'{"format": "contextpilot-state", "version": 1, "saved_at": 1', b"\xff\xfe"):
        p = tmp_path / "bad.json"
        p.write_bytes(raw)
        with pytest.raises(snapshot.SnapshotError):
            snapshot.load(p, target)

    # the sessions are untouched: same conversations, blocks and turns (idle_seconds moves with the clock)
    def stable(sessions: list[dict]) -> list[tuple]:
        return [(x["conversation_id"], x["blocks"], x["turns"]) for x in sessions]

    assert before[2] and stable(target.sessions()) == stable(before[2])


def test_current_bounds_and_downtime_apply_after_loading():
    data = snapshot.capture(_busy_pilot())
    small = ContextPilot(capacity_tokens=300, token_counter=lambda b: 10 + b % 7)
    rep = snapshot.restore(small, data)
    small.index.check()
    assert small.index.tokens <= 300 and rep.dropped_by_bounds > 0
    # saved an hour ago: a 60 s TTL has run out meanwhile, for blocks and sessions
    old = {**data, "saved_at": data["saved_at"] - 3600}
    ttl = ContextPilot(ttl=60, conversation_ttl=60, token_counter=lambda b: 10 + b % 7)
    rep = snapshot.restore(ttl, old)
    assert len(ttl.index) == 0 and ttl.sessions() == [] and rep.downtime_seconds >= 3600


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    snapshot.save(path, _busy_pilot())
    good = path.read_bytes()

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        snapshot.save(path, _busy_pilot(seed=5))
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["state.json"]


def test_periodic_saves_run_on_the_injected_sleep_and_clock(tmp_path):
    # no real interval: the injected sleep records each pause and ends the
    # loop after three; the clock stamps last_saved; wait_saves is the event
    pilot = _busy_pilot()
    paused: list[float] = []

    async def sleep(seconds: float) -> None:
        if len(paused) == 3:
            raise asyncio.CancelledError
        paused.append(seconds)

    sf = StateFile(str(tmp_path / "state.json"), {"": pilot}, 3600.0, clock=lambda: 1234.5, sleep=sleep)
    assert sf.status["saves"] == 0 and sf.wait_saves(1, timeout=0.01) is False
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(sf.run_periodic())
    assert paused == [3600.0] * 3  # one pause per save, of the configured interval
    assert sf.wait_saves(3, timeout=0.01)
    assert sf.status["saves"] == 3 and sf.status["last_saved"] == 1234.5 and sf.status["last_error"] is None
    restored = _fresh()
    snapshot.load(tmp_path / "state.json", restored)
    assert sorted(restored.index.request_ids()) == sorted(pilot.index.request_ids()) != []


def test_conversation_store_total_cap():
    store = DedupLedger(max_conversations=100, max_blocks=50, max_total_blocks=120)
    for c in range(10):
        conv = store.get(f"c{c}")
        for k in range(50):
            store.remember(conv, c * 1000 + k)
        assert store.total_blocks <= 120
        assert store.total_blocks == sum(store.info(i)["blocks"] for i in store.ids())
    assert store.ids()[-1] == "c9" and store.info("c9")["blocks"] == 50  # the newest keeps its blocks
    one = DedupLedger(max_blocks=50, max_total_blocks=10)
    conv = one.get("solo")
    for k in range(30):
        one.remember(conv, k)
    assert one.total_blocks == 10 and list(conv.sent) == list(range(20, 30))


# -- a real server process, restarted -------------------------------------------------


def _stop(proc, sig=signal.SIGTERM) -> None:
    proc.popen.send_signal(sig)
    proc.popen.wait(timeout=20)


@pytest.mark.parametrize("how", ["shutdown", "periodic-then-kill"])
def test_server_restart_keeps_index_and_sessions(tmp_path, eng, how):
    state = str(tmp_path / "cp-state.json")
    interval = "0" if how == "shutdown" else "0.3"
    with server(eng.url, "--state-file", state, "--state-interval", interval) as s:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            plan = c.post("/reorder", json={"contexts": [["a", "b", "c"], ["b", "c", "d"]]}).json()
            c.post("/deduplicate", json={"contexts": [["doc1", "doc2"]], "conversation_id": "user-7"})
            before = c.get("/requests").json()["request_ids"]
            stats = c.get("/stats").json()["index_stats"]
            if how != "shutdown":
                # wait for the event, not a guessed time: a save counted by now may have
                # captured before the last change; the one after it started later
                def saves() -> int:
                    return c.get("/stats").json()["server"]["state_file"]["saves"]

                n0 = saves()
                wait_for("two periodic saves after the last change", lambda: saves() >= n0 + 2)
        if how == "shutdown":
            _stop(s)
        else:
            _stop(s, signal.SIGKILL)  # no shutdown hook: the periodic save must have it
    assert json.load(open(state))["version"] == snapshot.VERSION
    with server(eng.url, "--state-file", state) as s2, httpx.Client(base_url=s2.url) as c:
        assert c.get("/requests").json()["request_ids"] == before
        assert set(before) == set(plan["request_ids"])
        after = c.get("/stats").json()
        assert after["index_stats"]["index_nodes"] == stats["index_nodes"]
        assert after["server"]["state_file"]["restored"]["requests"] == 2
        assert [x["conversation_id"] for x in c.get("/sessions").json()["sessions"]] == ["user-7"]
        again = c.post("/deduplicate", json={"contexts": [["doc2", "doc3"]], "conversation_id": "user-7"})
        assert again.json()["results"][0]["overlapping_docs"] == ["doc2"]  # remembered across restart
        follow = c.post("/reorder", json={"contexts": [["d", "c", "b"]]}).json()
        assert follow["mode"] == "incremental" and follow["stats"]["cached_tokens_estimate"] > 0
        assert c.get("/stats", params={"check": "true"}).json()["index_check"] == "ok"


def test_server_with_corrupt_state_file_starts_empty_and_warns(tmp_path, eng):
    state = tmp_path / "cp-state.json"
    state.write_text('{"format": "contextpilot-state", "version": 1, "index": {"nodes": [[5')
    with server(eng.url, "--state-file", str(state)) as s:
        r = httpx.get(s.url + "/stats").json()
        assert r["index_stats"]["live_requests"] == 0 and "error" in r["server"]["state_file"]["restored"]
        assert "unusable" in s.output() and "WARNING" in s.output()
        assert (tmp_path / "cp-state.json.corrupt").exists()
        assert httpx.post(s.url + "/reorder", json={"contexts": [[1, 2]]}).status_code == 200


def test_server_restart_keeps_every_replicas_index(tmp_path, eng):
    """With several engine replicas each live index has its own file."""
    state = str(tmp_path / "cp-state.json")
    with engine() as eng2:
        urls = ("--infer-api-url", eng.url, "--infer-api-url", eng2.url)
        with server(urls[1], *urls[2:], "--state-file", state, "--state-interval", "0") as s:
            with httpx.Client(base_url=s.url, timeout=30) as c:
                names = [r["name"] for r in c.get("/stats").json()["replicas"]]
                assert len(names) == 2
                for i, name in enumerate(names):
                    ctxs = [[f"r{i}-a", f"r{i}-b"], [f"r{i}-b", f"r{i}-c"], [f"r{i}-x"]][: i + 2]
                    out = c.post("/reorder", json={"contexts": ctxs, "replica": name}).json()
                    assert out["replicas"] == [name] * len(ctxs)
                before = c.get("/requests").json()
            _stop(s)
        assert before["replicas"] == {names[0]: 2, names[1]: 3}
        assert os.path.exists(state) and os.path.exists(f"{state}.{names[1]}")
        with server(urls[1], *urls[2:], "--state-file", state) as s2, httpx.Client(base_url=s2.url) as c:
            after = c.get("/requests").json()
            assert after["replicas"] == before["replicas"]
            assert sorted(after["request_ids"]) == sorted(before["request_ids"])
            status = c.get("/stats").json()["server"]["state_file"]
            assert status["restored"]["requests"] == 2
            assert status["replicas"][names[1]]["restored"]["requests"] == 3
