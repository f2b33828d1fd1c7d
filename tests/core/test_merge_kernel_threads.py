"""The compiled planner steps (core/merge_kernel.py) reached from several
threads at once from a cold state: the first import publishes every step
before any thread can use one, and a compile failure seen by several
threads at once warns once."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

import contextpilot.core
from contextpilot.core import forest_jit, merge_kernel


def _rebracket() -> int | None:
    # warm_up's tiny forest: two leaves, one merge
    sets = [frozenset({0, 1}), frozenset({0, 1, 2})]
    return merge_kernel.rebracket(2, [0], [1], [*sets, sets[0] & sets[1]], [1, 1, 1], 1)


class _SlowSteps:
    """``forest_jit`` whose step lookups pause, with a flag raised on the
    first: stretches the window between the first import publishing the
    kernel and publishing the other steps."""

    def __init__(self) -> None:
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> Any:
        self.entered.set()
        time.sleep(0.3)
        return getattr(forest_jit, name)


def test_a_cold_start_from_two_threads_publishes_every_step_first(monkeypatch) -> None:
    assert merge_kernel.available(), "numba must be importable for this test"
    expected = _rebracket()
    monkeypatch.setattr(merge_kernel, "_state", {})
    slow = _SlowSteps()
    monkeypatch.setattr(contextpilot.core, "forest_jit", slow, raising=False)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(_rebracket())
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    first = threading.Thread(target=run)
    first.start()
    assert slow.entered.wait(10), "the first thread never imported the steps"
    # the first thread is mid-import now: these must wait for it, not find half a table
    others = [threading.Thread(target=run) for _ in range(3)]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(30)
    assert errors == []
    assert results == [expected] * 4


def test_a_compile_failure_in_several_threads_warns_once(monkeypatch, caplog) -> None:
    from numba.core.errors import TypingError

    assert merge_kernel.available(), "numba must be importable for this test"
    n = 4
    together = threading.Barrier(n)

    def fails(*args: Any) -> None:
        together.wait(10)  # every thread is inside the call before any fails
        raise TypingError("no such typing here")

    monkeypatch.setattr(merge_kernel, "_state", {"kernel": fails, "rebracket": fails, "post_order": fails})
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(_rebracket())) for _ in range(n)]
    with caplog.at_level(logging.WARNING, logger=merge_kernel.__name__):
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert results == [None] * n
    warnings = [r for r in caplog.records if r.name == merge_kernel.__name__]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert not merge_kernel.available()


@pytest.fixture(autouse=True)
def _restore_kernel():
    # the tests above swap the module's table; later tests need the real one
    yield
    assert merge_kernel.available()
