"""Drop-in compatibility with the published ContextPilot 0.5.0, both ways,
with real processes on 127.0.0.1:

- the reference's own client (run by the reference's interpreter, via
  ``reference_driver.py``) against our server: every method it names;
- our client against the reference's own server (it runs on CPU).

Marked ``reference``: needs a virtualenv with ``contextpilot==0.5.0``
(``$CONTEXTPILOT_REFERENCE_PYTHON``; CI step 52 builds it). Skipped per test
when absent.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from contextpilot.client import ContextPilotIndexClient, ContextPilotNotSupportedError

from support.procs import engine, server, spawn

pytestmark = pytest.mark.reference

DRIVER = Path(__file__).with_name("reference_driver.py")
#: the reference interpreter must import its own contextpilot, never this checkout
REF_ENV = {"PYTHONPATH": ""}


@pytest.fixture(scope="module")
def ref_python() -> str:
    py = os.environ.get("CONTEXTPILOT_REFERENCE_PYTHON", "")
    if not py or not Path(py).exists():
        pytest.skip("set CONTEXTPILOT_REFERENCE_PYTHON to a python with contextpilot==0.5.0")
    ver = subprocess.run(
        [py, "-c", "import importlib.metadata as m; print(m.version('contextpilot'))"],
        capture_output=True,
        text=True,
        cwd="/",
        check=True,
        env={**os.environ, **REF_ENV},
    ).stdout.strip()
    assert ver == "0.5.0", ver
    return py


@pytest.fixture(scope="module")
def answers(ref_python):
    """What the reference client got from our server, method by method."""
    with engine() as e, server(e.url) as s:
        run = subprocess.run(
            [ref_python, str(DRIVER), s.url],
            capture_output=True,
            text=True,
            cwd="/",
            timeout=300,
            env={**os.environ, **REF_ENV},
        )
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout)


def test_reference_client_is_the_reference(answers):
    assert answers["client_module"] == "contextpilot.server.http_client"


def test_basic_methods_answer_with_reference_types(answers):
    assert answers["reset"]["status"] == "success"
    assert answers["health_empty"]["status"] == "ready" and answers["is_ready_empty"] is True
    assert answers["health"]["status"] == "ready" and answers["is_ready"] is True
    for key, n in (("reorder_int", 3), ("reorder_str", 2)):
        reordered, order = answers[key]
        assert sorted(order) == list(range(n)) and len(reordered) == n
    assert [sorted(x) for x in answers["reorder_str"][0]] == sorted(
        [sorted(x) for x in (["alpha doc", "beta doc"], ["beta doc", "gamma doc"])]
    )
    for key in ("reorder_raw", "build", "schedule"):
        r = answers[key]
        assert isinstance(r["reordered_contexts"], list) and isinstance(r["original_indices"], list), key
    assert all(isinstance(i, str) for i in answers["reorder_raw"]["request_ids"])
    req = answers["get_requests"]
    assert isinstance(req["num_requests"], int) and isinstance(req["request_ids"], list)
    st = answers["get_stats"]["index_stats"]
    assert isinstance(st["num_requests"], int) and isinstance(st["num_nodes"], int)
    assert st["num_requests"] == req["num_requests"]
    ev = answers["evict"]
    assert isinstance(ev["conversations_cleared"], int) and ev["removed_count"] == 1


def test_reference_dedup_flow(answers):
    t1, t2, t3 = answers["dedup_turn1"], answers["dedup_turn2"], answers["dedup_turn3"]
    assert t1 is not None and t2 is not None and t3 is not None
    d1 = t1["deduplication"]
    assert d1["enabled"] is True and d1["total_blocks_deduped"] == 0
    (r1,) = d1["results"]
    for field, typ in (
        ("request_id", str),
        ("original_docs", list),
        ("deduplicated_docs", list),
        ("overlapping_docs", list),
        ("new_docs", list),
        ("reference_hints", list),
        ("blocks_deduped", int),
        ("blocks_total", int),
        ("block_chars_saved", int),
    ):
        assert isinstance(r1[field], typ), field
    assert r1["request_id"] == t1["request_ids"][0]
    # turn 2 continues turn 1's conversation: B was sent there
    (r2,) = t2["results"]
    assert r2["overlapping_docs"] == ["doc B text"] and r2["new_docs"] == ["doc C text"]
    assert isinstance(t2["request_ids"][0], str) and r2["request_id"] == t2["request_ids"][0]
    # turn 3 continues through turn 2: A (turn 1) and C (turn 2) are repeats, D is new
    (r3,) = t3["deduplication"]["results"]
    assert sorted(r3["overlapping_docs"]) == ["doc A text", "doc C text"] and r3["new_docs"] == ["doc D text"]
    assert all(isinstance(h, str) and h for h in r3["reference_hints"])
    # a None parent is a new conversation: nothing hinted
    (other,) = answers["dedup_other"]["deduplication"]["results"]
    assert other["overlapping_docs"] == []


def test_endpoints_neither_server_has(answers):
    """/search, /insert and /update: the reference client names them, the
    reference server has no /update and we have none of the three (the
    planner owns the tree); its client answers None for them."""
    assert answers["search"] is None and answers["insert"] is None and answers["update_node"] is None


@pytest.fixture(scope="module")
def reference_server(ref_python):
    # the reference answers 503 on /health until its first /reorder; "/" says it is up
    with spawn(
        "contextpilot.server.http_server",
        "--host",
        "127.0.0.1",
        ready="/",
        python=ref_python,
        timeout=120,
        env=REF_ENV,
        cwd="/",
    ) as s:
        yield s.url


def test_our_client_against_reference_server(reference_server):
    with ContextPilotIndexClient(reference_server, timeout=60.0) as c:
        h = c.health()
        assert h["status"] == "not_ready" and h["index_empty"] is True
        assert c.is_ready()
        reordered, order = c.reorder([[1, 2, 3], [2, 3, 4], [1, 2, 5]])
        assert sorted(order) == [0, 1, 2] and len(reordered) == 3
        raw = c.reorder_raw([["x doc", "y doc"]])
        assert raw["reordered_contexts"] and raw["request_ids"]
        assert c.health()["status"] == "ready" and c.is_ready()
        assert isinstance(c.get_stats()["index_stats"]["num_requests"], int)
        req = c.get_requests()
        assert req["num_requests"] >= 1
        ev = c.evict([req["request_ids"][0]])
        assert ev["removed_count"] == 1 and isinstance(ev["conversations_cleared"], int)
        for call in (
            lambda: c.deduplicate([["x doc"]], "conv-1"),
            lambda: c.sessions(),
            lambda: c.warm(prefixes=["hello"]),
        ):
            with pytest.raises(ContextPilotNotSupportedError, match="not supported by this server"):
                call()
        assert c.reset()["status"] == "success"
