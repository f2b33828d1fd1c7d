"""Parallel planning picked by the front object, from any kind of caller.

Each caller is a real subprocess: a plain script file with no ``if
__name__ == "__main__":`` guard (what spawn-based pools re-import and
break on), a ``python -c`` program, a program read from stdin (as a
notebook kernel runs cells: no file behind ``__main__``), and a real
server process answering ``/reorder``. Each must use two worker processes
(reported by the pilot) and return the plan ``plan()`` makes in one
process; when workers cannot start, the call still succeeds with one
warning.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import httpx
import pytest

from contextpilot.bench.scale import plan_digest
from contextpilot.bench.workloads import synthetic_rag
from contextpilot.core.planner import plan
from contextpilot.core.workers import WorkerPool

from support.paths import child_pythonpath
from support.procs import server

N, CHUNK = 1200, 300

PROGRAM = textwrap.dedent(
    f"""
    import json, logging
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import contextpilot as cp
    from contextpilot.bench.scale import plan_digest
    from contextpilot.bench.workloads import synthetic_rag
    SETUP
    wl = synthetic_rag({N}, n_docs=800, n_topics=30, topic_size=40, seed=3)
    out = {{}}
    for stateless in (False, True):
        pilot = cp.ContextPilot(
            stateless=stateless, workers=2, chunk_size={CHUNK}, token_counter=wl.token_counter
        )
        r = pilot.reorder_detailed(wl.contexts)
        out[str(stateless)] = [plan_digest(r.order, r.reordered), r.timings["workers"], len(r.request_ids)]
    docs = [[f"doc {{b}}" for b in c] for c in wl.contexts]
    msgs, order = cp.ContextPilot(workers=2, chunk_size={CHUNK}).optimize_batch(docs, ["q"] * len(docs))
    out["batch"] = [len(msgs), sorted(order) == list(range(len(docs)))]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def expected() -> str:
    wl = synthetic_rag(N, n_docs=800, n_topics=30, topic_size=40, seed=3)
    p = plan(wl.contexts, token_counter=wl.token_counter, chunk_size=CHUNK)
    return plan_digest(p.order, p.contexts)


def _check(proc: subprocess.CompletedProcess, expected: str, workers: float = 2.0) -> None:
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["False"] == [expected, workers, N]  # stateful: recorded, one id per request
    assert out["True"] == [expected, workers, 0]
    assert out["batch"] == [N, True]


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, timeout=600)


def test_plain_script_without_a_main_guard(tmp_path, expected):
    script = tmp_path / "plan_batch.py"
    script.write_text(PROGRAM.replace("SETUP", ""))
    proc = _run([str(script)])
    _check(proc, expected)
    assert "WARNING" not in proc.stderr and "Traceback" not in proc.stderr


def test_python_c_program(expected):
    proc = _run(["-c", PROGRAM.replace("SETUP", "")])
    _check(proc, expected)
    assert "WARNING" not in proc.stderr


def test_program_from_stdin_like_a_notebook(expected):
    proc = _run(["-"], stdin=PROGRAM.replace("SETUP", ""))
    _check(proc, expected)
    assert "WARNING" not in proc.stderr


def test_workers_that_cannot_start_fall_back_with_one_warning(tmp_path, expected):
    script = tmp_path / "no_workers.py"
    script.write_text(PROGRAM.replace("SETUP", "import sys; sys.executable = '/nonexistent/python'"))
    proc = _run([str(script)])
    _check(proc, expected, workers=0.0)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 3  # one per call, each a single line
    assert all("planning in this process" in w for w in warnings)


def test_a_worker_that_dies_mid_batch_is_replaced_by_this_process(caplog, monkeypatch):
    # the workers import this test module to run _die_on
    monkeypatch.setenv("PYTHONPATH", child_pythonpath())

    def task(i: int):
        return (_die_on, lambda: (i,))

    with WorkerPool(2) as pool:
        assert pool.size == 2
        with caplog.at_level("WARNING", logger="contextpilot.core.workers"):
            got = list(pool.map([task(i) for i in range(6)]))
    assert got == [i * i for i in range(6)]
    assert len([r for r in caplog.records if "worker failed" in r.getMessage()]) == 1


def _die_on(i: int) -> int:
    import os

    if i == 2 and _in_worker():
        os._exit(3)  # the worker dies; the parent plans this share itself
    return i * i


def _in_worker() -> bool:
    import sys

    return sys.stdout is sys.stderr  # the worker routes stray prints to stderr


def test_server_batch_path_uses_workers():
    wl = synthetic_rag(N, n_docs=800, n_topics=30, topic_size=40, seed=3)
    # ids are token-weighted by the default counter here, so plan the same way
    p = plan(wl.contexts, chunk_size=CHUNK)
    with server("http://127.0.0.1:9", "--planning-workers", "2", "--planning-chunk", str(CHUNK)) as srv:
        r = httpx.post(srv.url + "/reorder", json={"contexts": wl.contexts}, timeout=300)
        assert r.status_code == 200, r.text
        body = r.json()
        stats = httpx.get(srv.url + "/stats", timeout=30).json()
        assert "Traceback" not in srv.output()
    assert (body["original_indices"], body["reordered_contexts"]) == (p.order, p.contexts)
    assert len(body["request_ids"]) == N
    assert stats["index_stats"]["last_plan_workers"] == 2
    assert stats["index_stats"]["live_requests"] == N


def test_an_error_in_a_task_is_raised_here_and_stops_the_workers(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", child_pythonpath())
    with WorkerPool(2) as pool:
        procs = [w.proc for w in pool.workers]
        with pytest.raises(ValueError, match="bad share 1"):
            list(pool.map([(_fail_on_one, (lambda i=i: (i,))) for i in range(4)]))
        assert [p.wait(timeout=10) for p in procs] == [-9, -9]  # killed, not left running


def _fail_on_one(i: int) -> int:
    if i == 1:
        raise ValueError(f"bad share {i}")
    import time

    time.sleep(0.5 if i else 0.0)
    return i
