"""Real processes on 127.0.0.1 for server tests: the contextpilot server and
the simulated engine, each started with ``python -m`` on a free port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, popen: subprocess.Popen, url: str, log: tempfile.SpooledTemporaryFile) -> None:
        self.popen, self.url, self._log = popen, url, log
        self._final: str | None = None  # the whole log, kept once the process has exited

    def output(self) -> str:
        if self._final is not None:
            return self._final
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")


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
    port = port or free_port()
    log = tempfile.TemporaryFile()
    full_env = {**os.environ, **(env or {})}
    popen = subprocess.Popen(
        [python, "-m", module, "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    proc = Proc(popen, url, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"{module} exited early:\n{proc.output()}")
            try:
                if httpx.get(url + ready, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{module} not ready:\n{proc.output()}")
            time.sleep(0.1)
        yield proc
    finally:
        popen.terminate()
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        proc._final = proc.output()
        log.close()


def wait_for(what: str, predicate, timeout: float = 30.0, interval: float = 0.05):
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


def engine(*args: str) -> contextlib.AbstractContextManager[Proc]:
    return spawn("contextpilot.sim.engine", *args)


def server(
    engine_url: str, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> contextlib.AbstractContextManager[Proc]:
    return spawn("contextpilot.server.http_server", "--infer-api-url", engine_url, *args, env=env, port=port)
