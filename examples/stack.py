"""What the examples share: start a process on a free local port and wait
until it answers, and a check that ends the example with a non-zero exit.

Not an example itself. Every process started here is stopped (terminate,
then kill) when its ``with`` block ends, whatever happened inside.
"""

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

__all__ = ["check", "contextpilot_server", "free_port", "sim_engine", "start"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start(
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    ready: str = "/health",
    port: int | None = None,
    timeout: float = 60.0,
) -> Iterator[str]:
    """Run ``python -m module --port P *args``; yields its base URL once
    ``GET ready`` answers below 500. Its output goes to a temporary file,
    printed if it fails to start."""
    port = port or free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")

    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{module} exited early:\n{output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + ready, timeout=1).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{module} did not answer within {timeout} s:\n{output()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def sim_engine(*args: str) -> contextlib.AbstractContextManager[str]:
    """The simulated OpenAI-compatible engine (``contextpilot.sim.engine``):
    a radix prefix cache that reports ``usage.prompt_tokens_details.cached_tokens``."""
    return start("contextpilot.sim.engine", *args)


def contextpilot_server(
    engine_url: str, *args: str, port: int | None = None
) -> contextlib.AbstractContextManager[str]:
    """The contextpilot server in front of ``engine_url``."""
    return start("contextpilot.server.http_server", "--infer-api-url", engine_url, *args, port=port)


def check(condition: object, claim: str) -> None:
    """Print ``claim`` as shown, or end the example with exit status 1."""
    if not condition:
        print(f"FAILED: {claim}", flush=True)
        raise SystemExit(1)
    print(f"ok: {claim}", flush=True)
