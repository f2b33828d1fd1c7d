"""What the examples share: start a process on a free local port and wait
until it answers, and a check that ends the example with a non-zero exit.

Not an example itself. Starting and stopping processes is the package's
one process helper, :mod:`contextpilot.bench.processes` (the tests start the
server and the engine the same way); this module gives the examples a
URL-only view of it. Every process started here is stopped (terminate, then
kill) when its ``with`` block ends, whatever happened inside; one that fails
to start raises with its output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from contextpilot.bench.processes import SERVER_MODULE, SIM_ENGINE_MODULE, free_port, spawn

__all__ = ["check", "contextpilot_server", "free_port", "sim_engine", "start"]


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
    ``GET ready`` answers below 500."""
    with spawn(module, *args, env=env, ready=ready, port=port, timeout=timeout) as proc:
        yield proc.url


def sim_engine(*args: str) -> contextlib.AbstractContextManager[str]:
    """The simulated OpenAI-compatible engine (``contextpilot.sim.engine``):
    a radix prefix cache that reports ``usage.prompt_tokens_details.cached_tokens``."""
    return start(SIM_ENGINE_MODULE, *args)


def contextpilot_server(
    engine_url: str, *args: str, port: int | None = None
) -> contextlib.AbstractContextManager[str]:
    """The contextpilot server in front of ``engine_url``."""
    return start(SERVER_MODULE, "--infer-api-url", engine_url, *args, port=port)


def check(condition: object, claim: str) -> None:
    """Print ``claim`` as shown, or end the example with exit status 1."""
    if not condition:
        print(f"FAILED: {claim}", flush=True)
        raise SystemExit(1)
    print(f"ok: {claim}", flush=True)
