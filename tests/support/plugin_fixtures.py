"""Fixtures and checks the plugins' suites (integrations/*/tests) share.

Each plugin's ``tests/conftest.py`` imports the fixtures it uses from here
(``tests/`` is on the pythonpath of the plugin's pytest config). Only
contextpilot, pytest and the server extra's ``httpx`` are needed: every
plugin's virtualenv has those, whatever its framework.

- :func:`server_url`: a real contextpilot server process on 127.0.0.1
  (uvicorn, started by :mod:`support.procs`), one per session; no engine
  behind it (the plugins use the index endpoints only);
- :func:`index_client`: a client of that server, its index reset first;
- :func:`sim_engine`: contextpilot's simulated OpenAI-compatible engine as a
  process (token-level prefix cache, reports ``cached_tokens``), and
  :func:`flush_cache` to empty that cache between two orders;
- :func:`unreachable_url`: a 127.0.0.1 URL that nothing listens on;
- :func:`assert_reuses_prefix`: the check of a two-query session.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from support.procs import Proc, free_port

__all__ = [
    "assert_reuses_prefix",
    "flush_cache",
    "index_client",
    "server_url",
    "sim_engine",
    "unreachable_url",
]


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """The URL of a real contextpilot server on 127.0.0.1. Skips without the
    server extra (fastapi), which only the server-mode tests need."""
    pytest.importorskip("fastapi", reason="server mode needs contextpilot[server]")
    from support.procs import server

    # the index endpoints never reach the engine: a closed port stands in for it
    with server("http://127.0.0.1:9") as proc:
        yield proc.url


@pytest.fixture
def index_client(server_url: str) -> Iterator[object]:
    """``ContextPilotIndexClient`` on :func:`server_url`, its index emptied
    first: the session's server is shared, each test starts from nothing."""
    pytest.importorskip("httpx")
    from contextpilot.server.http_client import ContextPilotIndexClient

    with ContextPilotIndexClient(server_url) as c:
        c.reset()
        yield c


@pytest.fixture(scope="module")
def sim_engine() -> Iterator[Proc]:
    """The simulated engine (``contextpilot.sim.engine``) on 127.0.0.1, one per
    test module; tests that compare orders call :func:`flush_cache` first."""
    pytest.importorskip("fastapi", reason="the simulated engine needs contextpilot[server]")
    from support.procs import engine

    with engine() as proc:
        yield proc


def flush_cache(url: str) -> None:
    """Empty the simulated engine's prefix cache (``POST /flush_cache``), so
    the next order does not reuse what the previous one left."""
    import httpx

    httpx.post(f"{url}/flush_cache", timeout=5).raise_for_status()


def unreachable_url() -> str:
    """``http://127.0.0.1:<port>`` with nothing listening (a port just freed):
    connecting fails at once, which the plugins must report clearly."""
    return f"http://127.0.0.1:{free_port()}"


def assert_reuses_prefix(first: Sequence[str], second: Sequence[str], at_least: int = 2) -> int:
    """The second request of a session starts with the first one's documents:
    its longest prefix made of documents both share equals the first's, and
    holds at least ``at_least`` of them. Returns that prefix's length."""
    from support.chat_scoring import shareable_prefix

    best = shareable_prefix(list(first), set(second))
    assert best >= at_least, (list(first), list(second))
    assert list(second[:best]) == list(first[:best]), (list(first), list(second))
    return best
