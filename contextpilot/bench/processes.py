"""Local processes for benchmarks, examples and tests: a free port on
127.0.0.1, a ``python -m`` service started on it and waited for until it
answers, and a stop that always reaps the child.

The one process helper of the repository: the examples (``examples/stack.py``)
and the tests (``tests/support/procs.py`` re-exports it) start the simulated
engine and the contextpilot server through :func:`spawn`, and the benchmark's
llama-server and product path stop theirs with :func:`stop_process`.

Invariants:

* every process :func:`spawn` starts is stopped (terminate, then kill after a
  grace period) and reaped when its ``with`` block ends, whatever happened
  inside it, and its log file is closed; its whole output stays readable
  afterwards (:meth:`Proc.output`);
* a process that exits before it answers, or does not answer within
  ``timeout`` seconds, raises (``RuntimeError`` / ``TimeoutError``) with its
  output, after it is stopped.

Standard library only (readiness is polled with ``urllib``, proxies
bypassed), so importing it needs neither the server extra nor numpy. Modules
are named as strings and run in a child interpreter: nothing here imports
the server or the simulated engine.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO

__all__ = [
    "SERVER_MODULE",
    "SIM_ENGINE_MODULE",
    "Proc",
    "answers",
    "free_port",
    "read_log",
    "spawn",
    "spawn_server",
    "spawn_sim_engine",
    "stop_process",
    "wait_ready",
]

#: the modules :func:`spawn_sim_engine` and :func:`spawn_server` run
SIM_ENGINE_MODULE = "contextpilot.sim.engine"
SERVER_MODULE = "contextpilot.server.http_server"

# local services only: an http_proxy in the environment must not see these requests
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free when asked (the OS picks it).

    Another process may take it before the caller binds it; callers that
    cannot retry pass it straight to the child they start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a child process if it still runs: terminate, then kill after
    ``grace`` seconds; returns once it is reaped."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_log(log: IO[bytes]) -> str:
    """Everything written to ``log`` (a child's stdout and stderr) so far,
    decoded. Reads with ``pread`` and never moves the file offset: the
    child shares it, and a seek would make its next writes land mid-file."""
    log.flush()
    fd = log.fileno()
    parts: list[bytes] = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts).decode(errors="replace")


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether ``GET url`` gets an HTTP answer below 500 (a 4xx counts: the
    service is up; a 5xx, such as a model still loading, does not)."""
    try:
        with _LOCAL.open(url, timeout=timeout) as r:
            return int(r.status) < 500
    except urllib.error.HTTPError as e:  # before URLError: it is one
        return e.code < 500
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(
    popen: subprocess.Popen[bytes],
    url: str,
    *,
    name: str,
    timeout: float,
    output: Callable[[], str],
    interval: float = 0.1,
) -> None:
    """Poll ``GET url`` until it answers below 500 (:func:`answers`).

    Raises ``RuntimeError`` if ``popen`` exits first and ``TimeoutError``
    after ``timeout`` seconds, each with ``output()``; the caller stops the
    process. One poll costs at most about a second plus ``interval``."""
    deadline = time.monotonic() + timeout
    while True:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited early with {popen.returncode}:\n{output()}")
        if answers(url):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not ready in {timeout} s:\n{output()}")
        time.sleep(interval)


class Proc:
    """A started child process: ``popen``, its base ``url`` and its output."""

    def __init__(self, popen: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
        self.popen, self.url, self._log = popen, url, log
        self._final: str | None = None  # the whole log, kept once the process has exited

    def output(self) -> str:
        """Everything the process has written to stdout and stderr so far."""
        return self._final if self._final is not None else read_log(self._log)

    def close(self) -> None:
        """Stop the process (:func:`stop_process`), keep its whole output and
        close its log; idempotent."""
        stop_process(self.popen)
        if self._final is None:
            self._final = read_log(self._log)
            self._log.close()


@contextlib.contextmanager
def spawn(
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    ready: str = "/health",
    port: int | None = None,
    timeout: float = 30.0,
    python: str = sys.executable,
    cwd: str | None = None,
) -> Iterator[Proc]:
    """Run ``python -m module --port P *args`` on 127.0.0.1 and yield it once
    ``GET ready`` answers below 500.

    ``env`` is added to this process's environment; ``port`` defaults to a
    free one. The child is stopped and reaped when the block ends (module
    docstring)."""
    port = port or free_port()
    log = tempfile.TemporaryFile()
    popen = subprocess.Popen(
        [python, "-m", module, "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    proc = Proc(popen, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(popen, proc.url + ready, name=module, timeout=timeout, output=proc.output)
        yield proc
    finally:
        proc.close()


def spawn_sim_engine(*args: str, timeout: float = 30.0) -> contextlib.AbstractContextManager[Proc]:
    """The simulated OpenAI-compatible engine (``contextpilot.sim.engine``): a
    radix prefix cache that reports ``usage.prompt_tokens_details.cached_tokens``."""
    return spawn(SIM_ENGINE_MODULE, *args, timeout=timeout)


def spawn_server(
    engine_url: str,
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    timeout: float = 30.0,
) -> contextlib.AbstractContextManager[Proc]:
    """The contextpilot server (``contextpilot.server.http_server``) in front of ``engine_url``."""
    return spawn(SERVER_MODULE, "--infer-api-url", engine_url, *args, env=env, port=port, timeout=timeout)
