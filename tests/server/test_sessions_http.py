"""Chat sessions over HTTP (``/chat/sessions``) and ``/warm``'s report,
against a real server process and the simulated engine; the session
store's bounds and persistence against the real library objects."""

from __future__ import annotations

import httpx
import pytest

from support.clock import ManualClock
from support.procs import free_port, server

pytest.importorskip("fastapi")

from contextpilot import ContextPilot  # noqa: E402
from contextpilot.client import (  # noqa: E402
    AsyncContextPilotIndexClient,
    ContextPilotHTTPError,  # noqa: E402
    ContextPilotIndexClient,
)
from contextpilot.core.chat import ChatStore  # noqa: E402

SYSTEM = "You are a careful assistant for the payroll handbook. " * 8
DOC_A = "Payroll runs on the 25th of each month; if that is a weekend, the Friday before. " * 3
DOC_B = "Expense claims need a receipt and are paid with the next payroll run after approval. " * 3


def test_create_warms_the_system_prompt_and_turns_reuse_the_history(http):
    created = http.post("/chat/sessions", json={"session_id": "s1", "system_prompt": SYSTEM})
    assert created.status_code == 200, created.text
    first = created.json()
    assert first["created"] and first["session"]["turns"] == 0
    assert first["warmed"]["prompt_tokens"] > 0
    # a second session with the same system prompt finds that prefix cached
    second = http.post("/chat/sessions", json={"session_id": "s2", "system_prompt": SYSTEM}).json()
    assert second["warmed"]["cached_tokens"] > first["warmed"]["cached_tokens"]

    t1 = http.post("/chat/sessions/s1/turns", json={"docs": [DOC_A], "query": "When is payday?"})
    assert t1.status_code == 200, t1.text
    t1 = t1.json()
    assert t1["turn"] == 1 and t1["messages_sent"] == 2 and t1["answer"]
    # the warmed system prompt was reused by the first turn
    assert t1["cached_tokens"] >= second["warmed"]["cached_tokens"] // 2 > 0
    t2 = http.post("/chat/sessions/s1/turns", json={"docs": [DOC_A, DOC_B], "query": "And expenses?"}).json()
    assert t2["turn"] == 2 and t2["messages_sent"] == 4
    # turn 2's prompt starts with turn 1's prompt and answer: all of it cached
    assert t2["cached_tokens"] > t1["cached_tokens"]
    assert t2["cached_tokens"] >= t1["prompt_tokens"] - 2
    # the live index recorded the turn under the id the engine saw
    assert t2["request_id"] in http.get("/requests").json()["request_ids"]

    detail = http.get("/chat/sessions/s1").json()
    assert [m["role"] for m in detail["history"]] == ["user", "assistant", "user", "assistant"]
    # DOC_A went in full once; turn 2 refers to it and carries DOC_B in full
    assert DOC_A in detail["history"][0]["content"] and DOC_A not in detail["history"][2]["content"]
    assert DOC_B in detail["history"][2]["content"]
    assert detail["system_prompt"] == SYSTEM and detail["turns"] == 2
    # its dedup conversation is what GET /sessions (dedup state, no history) lists
    convs = [c["conversation_id"] for c in http.get("/sessions").json()["sessions"]]
    assert detail["conversation_id"].startswith("chat-") and detail["conversation_id"] in convs


def test_concurrent_turns_of_one_session_are_serialised(srv, http):
    import asyncio

    http.post("/chat/sessions", json={"session_id": "cc", "system_prompt": "sys"})

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            return await asyncio.gather(
                *(
                    c.post("/chat/sessions/cc/turns", json={"query": f"q{i}", "docs": [DOC_A]})
                    for i in range(6)
                )
            )

    rs = asyncio.run(fire())
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    assert sorted(r.json()["turn"] for r in rs) == [1, 2, 3, 4, 5, 6]
    history = http.get("/chat/sessions/cc").json()["history"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 6
    # the document went in full exactly once, whatever order the turns ran in
    assert sum(DOC_A in m["content"] for m in history) == 1


def test_list_delete_and_unknown_ids(http):
    assert http.get("/chat/sessions").json() == {"count": 0, "sessions": []}
    sid = http.post("/chat/sessions", json={"system_prompt": ""}).json()["session"]["session_id"]
    assert sid.startswith("cs-")
    listed = http.get("/chat/sessions").json()
    assert listed["count"] == 1 and listed["sessions"][0]["session_id"] == sid
    # the dedup-conversation listing is another thing: no chat session ids there
    assert sid not in [s["conversation_id"] for s in http.get("/sessions").json()["sessions"]]
    assert http.delete(f"/chat/sessions/{sid}").json() == {"session_id": sid, "deleted": True}
    for method, path in (
        ("DELETE", f"/chat/sessions/{sid}"),
        ("GET", f"/chat/sessions/{sid}"),
        ("POST", f"/chat/sessions/{sid}/turns"),
    ):
        r = http.request(method, path, json={"query": "hi"} if method == "POST" else None)
        assert r.status_code == 404, (method, r.text)
    assert http.get("/chat/sessions").json()["count"] == 0


def test_same_settings_reuse_other_settings_conflict(http):
    body = {"session_id": "k", "system_prompt": "sys", "max_turns": 3}
    assert http.post("/chat/sessions", json=body).json()["created"] is True
    again = http.post("/chat/sessions", json=body).json()
    assert again["created"] is False and "warmed" not in again
    r = http.post("/chat/sessions", json={**body, "system_prompt": "other"})
    assert r.status_code == 409 and "system_instruction" in r.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/chat/sessions", {"max_turns": 0}, "max_turns"),
        ("/chat/sessions", {"system_prompt": 5}, "system_prompt"),
        ("/chat/sessions", {"session_id": "a/b"}, "session_id"),
        ("/chat/sessions", {"warm": 1}, "warm"),
        ("/chat/sessions", {"bogus": 1}, "bogus"),
        ("/chat/sessions/v/turns", {}, "query"),
        ("/chat/sessions/v/turns", {"query": "q", "docs": "not a list"}, "docs"),
        ("/chat/sessions/v/turns", {"query": "q", "docs": [1]}, "docs"),
        ("/chat/sessions/v/turns", {"query": "   "}, "query"),
        ("/chat/sessions/v/turns", {"query": "q", "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_input_is_422_naming_the_field(http, path, body, field):
    http.post("/chat/sessions", json={"session_id": "v", "system_prompt": ""})
    r = http.post(path, json=body)
    assert r.status_code == 422, r.text
    assert any(field in map(str, e["loc"]) for e in r.json()["detail"]), r.text
    # state intact: the session still answers a good turn
    ok = http.post("/chat/sessions/v/turns", json={"query": "still there?"})
    assert ok.status_code == 200 and ok.json()["turn"] >= 1


def test_warm_reports_what_it_cached(http):
    r = http.post("/warm", json={"prefixes": ["a warm prefix " * 20, "another one " * 5]}).json()
    assert r["status"] == "success"
    assert [w["index"] for w in r["warmed"]] == [0, 1]
    assert all(w["prompt_tokens"] > 0 for w in r["warmed"])
    assert r["warmed_tokens"] == sum(w["prompt_tokens"] for w in r["warmed"])
    again = http.post("/warm", json={"prefixes": ["a warm prefix " * 20]}).json()
    assert again["warmed"][0]["cached_before"] > r["warmed"][0]["cached_before"]


def test_dead_engine_fails_warm_and_create_with_502():
    dead = f"http://127.0.0.1:{free_port()}"
    with server(dead, "--engine-connect-timeout", "1") as s, httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.post("/warm", json={"prefixes": ["x"]})
        assert r.status_code == 502 and r.json()["detail"]["status"] == "failed"
        r = c.post("/chat/sessions", json={"session_id": "d", "system_prompt": "sys"})
        assert r.status_code == 502, r.text
        assert c.get("/chat/sessions").json()["count"] == 0  # dropped again
        # without warming, the session exists; its turn fails with 502 and stays pending
        assert c.post("/chat/sessions", json={"session_id": "d", "warm": False}).status_code == 200
        assert c.post("/chat/sessions/d/turns", json={"query": "q"}).status_code == 502
        assert c.get("/chat/sessions/d").json()["pending"] is True


def test_sessions_survive_a_state_file_restart(eng, tmp_path):
    state = str(tmp_path / "state.json")
    port = free_port()
    with (
        server(eng.url, "--state-file", state, port=port) as s,
        httpx.Client(base_url=s.url, timeout=30) as c,
    ):
        c.post("/chat/sessions", json={"session_id": "p", "system_prompt": SYSTEM, "max_turns": 5})
        before = c.post("/chat/sessions/p/turns", json={"docs": [DOC_A], "query": "payday?"}).json()
    with (
        server(eng.url, "--state-file", state, port=port) as s,
        httpx.Client(base_url=s.url, timeout=30) as c,
    ):
        detail = c.get("/chat/sessions/p").json()
        assert detail["max_turns"] == 5 and detail["system_prompt"] == SYSTEM
        assert [m["role"] for m in detail["history"]] == ["user", "assistant"]
        after = c.post("/chat/sessions/p/turns", json={"docs": [DOC_A], "query": "again?"}).json()
        assert after["turn"] == 2 and after["messages_sent"] == 4
        # the restored history is what the engine cached: turn 2 reuses turn 1
        assert after["cached_tokens"] >= before["prompt_tokens"] - 2
        assert DOC_A not in c.get("/chat/sessions/p").json()["history"][2]["content"]


def test_clients_session_calls(srv):
    with ContextPilotIndexClient(srv.url, timeout=30) as c:
        c.reset()
        made = c.create_chat_session(system_prompt="be brief", session_id="c1")
        assert made["created"]
        assert c.chat_turn("c1", "q1", docs=[DOC_A])["turn"] == 1
        assert [s["session_id"] for s in c.chat_sessions()["sessions"]] == ["c1"]
        assert len(c.chat_session("c1")["history"]) == 2
        assert c.delete_chat_session("c1")["deleted"]
        with pytest.raises(ContextPilotHTTPError) as e:
            c.delete_chat_session("c1")
        assert e.value.status == 404

    async def run() -> None:
        async with AsyncContextPilotIndexClient(srv.url, timeout=30) as c:
            await c.create_chat_session(session_id="c2", system_prompt="be brief")
            assert (await c.chat_turn("c2", "q1"))["turn"] == 1
            assert (await c.chat_sessions())["count"] == 1
            assert len((await c.chat_session("c2"))["history"]) == 2
            assert (await c.delete_chat_session("c2"))["deleted"]

    import asyncio

    asyncio.run(run())


# -- the store itself: bounds and persistence (real ChatStore and pilot, fake clock) --------


def test_store_drops_idle_sessions_and_keeps_its_cap():
    clock = ManualClock(1000.0)
    pilot = ContextPilot()
    store = ChatStore(pilot, max_sessions=2, session_ttl=60.0, clock=clock)
    for sid in ("a", "b", "c"):
        store.session(sid).messages([DOC_A], "q")
    assert store.ids() == ["b", "c"]  # the cap dropped the least recently used
    clock.now += 30
    store.session("c").reply("answer")  # c used again
    clock.now += 45
    assert store.ids() == ["c"]  # b idle 75 s > ttl
    clock.now += 61
    assert store.ids() == []


def test_store_export_parse_round_trip_and_downtime():
    clock = ManualClock(1000.0)
    pilot = ContextPilot()
    store = ChatStore(pilot, session_ttl=60.0, clock=clock)
    s = store.session("x", system_instruction="sys", max_turns=4)
    sent = s.messages([DOC_A], "q")
    s.reply("a")
    rows = store.export()
    other = ChatStore(pilot, session_ttl=60.0, clock=clock)
    other.replace(other.parse(rows))
    again = other.session("x")
    assert again.history == s.history and again.turns == 1 and again.system_instruction == "sys"
    assert again.messages([], "next")[: len(sent)] == [*sent]
    # downtime counts against the idle TTL
    gone = ChatStore(pilot, session_ttl=60.0, clock=clock)
    gone.replace(gone.parse(rows, downtime=120.0))
    assert gone.ids() == []
    with pytest.raises(ValueError, match="chats\\[0\\].history"):
        other.parse([{**rows[0], "history": [["user"]]}])


def test_max_sessions_flag_bounds_chat_sessions(eng):
    # --max-sessions 2 on a real server: a third session pushes out the least recently used
    with server(eng.url, "--max-sessions", "2") as s, httpx.Client(base_url=s.url, timeout=60) as c:
        for sid in ("m1", "m2", "m3"):
            r = c.post("/chat/sessions", json={"session_id": sid, "system_prompt": "sys"})
            assert r.status_code == 200, r.text
        listed = c.get("/chat/sessions").json()
        assert listed["count"] == 2
        assert sorted(x["session_id"] for x in listed["sessions"]) == ["m2", "m3"]
        assert c.get("/chat/sessions/m1").status_code == 404
