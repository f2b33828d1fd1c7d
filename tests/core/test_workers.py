"""WorkerPool (core/workers.py): ``map(..., retire=True)`` lets each worker
exit as soon as no task is left for it, while others still run; a failed
warm-up is reported once for the whole pool, and the tasks still run (on
the workers when they can, here when the warm-up could not import)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from contextpilot.core.workers import WorkerPool

from support.paths import child_pythonpath

WORKERS = "contextpilot.core.workers"


@pytest.fixture(autouse=True)
def _workers_import_this_module(monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", child_pythonpath())


def _pid() -> int:
    return os.getpid()


def _pid_once(gate: str) -> int:
    # holds its worker until the test creates ``gate``
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def _warm_that_fails() -> bool:
    logging.getLogger("contextpilot.test").warning("compiled steps missing here")
    return False


def _one_warms_slowly() -> None:
    # the first worker to claim the flag file warms at once, the other slowly
    try:
        os.close(os.open(os.environ["CP_TEST_WARM_FLAG"], os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(5)


def _exited(pool: WorkerPool, pid: int, wait: float = 20.0) -> bool:
    proc = next(w.proc for w in pool.workers if w.proc.pid == pid)
    deadline = time.monotonic() + wait
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc.poll() is not None


@pytest.mark.parametrize("retire", [True, False])
def test_a_retiring_pool_frees_a_worker_with_nothing_left_to_do(tmp_path: Path, retire: bool) -> None:
    gate = tmp_path / "gate"
    with WorkerPool(2) as pool:
        assert pool.size == 2
        # task 0 returns at once; task 1 holds the other worker until the gate opens
        results = pool.map([(_pid, lambda: ()), (_pid_once, lambda: (str(gate),))], retire=retire)
        first = next(results)
        assert first in pool.pids and first != os.getpid()
        busy = next(p for p in pool.pids if p != first)
        # the idle worker exits while the other still plans, only when retiring
        assert _exited(pool, first, wait=20.0 if retire else 1.0) is retire
        assert not _exited(pool, busy, wait=0.0)
        gate.touch()
        assert next(results) == busy
        assert list(results) == []
        assert pool.size == (0 if retire else 2)


def test_a_retired_pool_runs_later_tasks_here() -> None:
    with WorkerPool(2) as pool:
        assert len(list(pool.map([(_pid, lambda: ())] * 3, retire=True))) == 3
        assert pool.size == 0
        assert list(pool.map([(_pid, lambda: ())] * 2)) == [os.getpid()] * 2


def test_a_warm_up_that_cannot_import_warns_once_and_plans_here(caplog) -> None:
    with WorkerPool(2, warm=("contextpilot_no_such_module",)) as pool:
        assert pool.size == 2
        with caplog.at_level(logging.WARNING, logger=WORKERS):
            got = list(pool.map([(_pid, lambda: ())] * 6))
    assert got == [os.getpid()] * 6
    warnings = [r.getMessage() for r in caplog.records if r.name == WORKERS]
    assert len(warnings) == 1, warnings
    assert "contextpilot_no_such_module" in warnings[0] and "in this process" in warnings[0]


def test_a_warm_up_that_fails_warns_once_and_the_workers_still_plan(caplog) -> None:
    with WorkerPool(2, warm=(f"{__name__}:_warm_that_fails",)) as pool:
        pids = set(pool.pids)
        with caplog.at_level(logging.WARNING, logger=WORKERS):
            got = list(pool.map([(_pid, lambda: ())] * 6, retire=True))
    assert set(got) <= pids and os.getpid() not in got
    warnings = [r.getMessage() for r in caplog.records if r.name == WORKERS]
    assert len(warnings) == 1, warnings
    # the worker's own log line reaches the caller, inside that one warning
    assert "returned False" in warnings[0] and "compiled steps missing here" in warnings[0]


def test_a_map_left_after_its_last_result_does_not_warn_about_a_warming_worker(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    # what plan() does: it takes one result per chunk and drops the map; a
    # worker still warming up then is stopped, which is no failure
    monkeypatch.setenv("CP_TEST_WARM_FLAG", str(tmp_path / "flag"))
    with caplog.at_level(logging.WARNING, logger=WORKERS):
        with WorkerPool(2, warm=(f"{__name__}:_one_warms_slowly",)) as pool:
            results = pool.map([(_pid, lambda: ())] * 3, retire=True)
            got = [next(results) for _ in range(3)]
            del results
    assert len(set(got)) == 1 and os.getpid() not in got  # the quick worker ran them all
    assert [r.getMessage() for r in caplog.records if r.name == WORKERS] == []


def _env(name: str) -> str | None:
    return os.environ.get(name)


def test_workers_return_freed_arrays_to_the_system(monkeypatch) -> None:
    # a fixed glibc mmap threshold in the workers, unless the caller set one
    task = (_env, lambda: ("MALLOC_MMAP_THRESHOLD_",))
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    with WorkerPool(1) as pool:
        assert list(pool.map([task])) == [str(1 << 20)]
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "262144")
    with WorkerPool(1) as pool:
        assert list(pool.map([task])) == ["262144"]
