"""Real processes on 127.0.0.1 for the tests: the contextpilot server and the
simulated engine, each started with ``python -m`` on a free port.

Starting and stopping processes lives in the package, in
:mod:`contextpilot.bench.processes` (the examples use it too); this module
re-exports it under the names the tests use (``engine``, ``server``) and adds
:func:`wait_for`, the tests' deadline poll, and :func:`silent_listener`, a
peer that accepts connections and never answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

from contextpilot.bench.processes import Proc, free_port, spawn
from contextpilot.bench.processes import spawn_server as server
from contextpilot.bench.processes import spawn_sim_engine as engine

__all__ = ["Proc", "engine", "free_port", "server", "silent_listener", "spawn", "wait_for"]

T = TypeVar("T")


def wait_for(what: str, predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll ``predicate()`` until it returns something truthy and return that;
    fail naming ``what`` after ``timeout`` s. Tests wait for the event they
    need, with a deadline far above a loaded machine's latency, instead of
    sleeping a fixed time and hoping."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def silent_listener() -> tuple[socket.socket, str]:
    """A socket listening on 127.0.0.1 that accepts connections (the kernel
    does, up to its backlog) and never answers, and its ``http://`` URL: a
    hanging peer. The caller closes it (closing makes pending requests fail
    at once)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    return lsock, f"http://127.0.0.1:{lsock.getsockname()[1]}"
