"""The llama.cpp chain as real processes, for the proxy's tests: a
llama-server (the stand-in ``contextpilot.sim.llama_server``, or the real one the
test starts) <- ``python -m contextpilot.llamacpp.proxy`` <- a contextpilot
server the proxy reports evictions to; chat requests sent through the
server's proxy, and the server's live request ids.

Tests on the real llama-server skip when it (or the ``gguf`` package that
writes the tiny model) is missing, and fail instead under
``CONTEXTPILOT_ENGINE_TESTS=1`` (CI step 31): :func:`require_llama_server`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from support.procs import Proc, free_port, server, spawn

#: CI step 31 sets it: a missing llama-server fails instead of skipping
ENGINE_TESTS_REQUIRED = os.environ.get("CONTEXTPILOT_ENGINE_TESTS") == "1"


def skip_or_fail(reason: str, required_by: str = "CONTEXTPILOT_ENGINE_TESTS") -> NoReturn:
    """Skip the test, or fail it when the environment variable ``required_by``
    is 1 (the CI step that must run it sets it: a skip there would hide a
    test not run)."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {reason}")
    pytest.skip(f"REAL llama.cpp TEST NOT RUN: {reason}")


def require_llama_server() -> Path:
    """A built llama-server binary (built here, ~7 min, under
    ``CONTEXTPILOT_ENGINE_TESTS=1``), with the ``gguf`` package that writes
    the tiny model; otherwise :func:`skip_or_fail`."""
    from contextpilot.bench.engine import find_llama_server

    binary = find_llama_server(build=ENGINE_TESTS_REQUIRED)
    if binary is None:
        skip_or_fail("no llama-server binary (scripts/build_llama_server.sh, ~7 min, or LLAMA_SERVER_BIN)")
    try:
        import gguf  # noqa: F401  (writes the tiny model)
    except ImportError:
        skip_or_fail("the gguf package is missing (pip install -e '.[bench]')")
    assert binary is not None
    return binary


def real_model_files(name: str, required_by: str = "CONTEXTPILOT_ENGINE_TESTS") -> tuple[Path, Path]:
    """A llama-server binary and the GGUF of the real model ``name``
    (``contextpilot.bench.real_models``). When ``required_by`` is 1 both are
    made if missing (a build of ~7 min, a fetch of 250 MB, each once);
    otherwise a missing one skips the test (:func:`skip_or_fail`)."""
    from contextpilot.bench.engine import cache_dir, find_llama_server
    from contextpilot.bench.real_models import fetch_model, model_spec

    required = os.environ.get(required_by) == "1"
    binary = find_llama_server(build=required)
    if binary is None:
        skip_or_fail(
            "no llama-server binary (scripts/build_llama_server.sh, ~7 min, or LLAMA_SERVER_BIN)", required_by
        )
    spec = model_spec(name)
    cached = cache_dir() / "models" / spec.filename
    if not required and not cached.is_file():
        skip_or_fail(
            f"model {spec.filename} not in {cached.parent} (python -c "
            f"'from contextpilot.bench.real_models import fetch_model; fetch_model(\"{name}\")')",
            required_by,
        )
    return binary, fetch_model(name)  # a no-op when cached


def fake(*args: str) -> contextlib.AbstractContextManager[Proc]:
    """The llama-server stand-in (``contextpilot.sim.llama_server``) on a free port."""
    return spawn("contextpilot.sim.llama_server", *args)


def proxy(engine: str, index: str | None = None, **env: str) -> contextlib.AbstractContextManager[Proc]:
    """The llama.cpp proxy in front of ``engine``, reporting evictions to ``index``
    (none when empty); slot polling off unless ``SLOTS_POLL_INTERVAL`` is given."""
    full = {"LLAMA_SERVER_URL": engine, "CONTEXTPILOT_INDEX_URL": index or "", "SLOTS_POLL_INTERVAL": "0"}
    full.update(env)
    return spawn("contextpilot.llamacpp.proxy", env=full, ready="/stats")


@contextlib.contextmanager
def stack(*fake_args: str, **proxy_env: str) -> Iterator[tuple[Proc, Proc, Proc]]:
    """fake llama-server <- proxy <- contextpilot server (the proxy reports to it)."""
    port = free_port()
    with fake(*fake_args) as eng, proxy(eng.url, f"http://127.0.0.1:{port}", **proxy_env) as prx:
        with server(prx.url, port=port) as srv:
            yield eng, prx, srv


def chat(system: str, *turns: str) -> list[dict[str, str]]:
    """Chat messages: the system prompt, then turns alternating user / assistant."""
    msgs = [{"role": "system", "content": system}]
    for i, t in enumerate(turns):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": t})
    return msgs


def send(url: str, messages: list[dict[str, str]], stream: bool = False, **extra) -> str:
    """One chat completion through the server's proxy; returns the request id it minted."""
    body = {"messages": messages, "max_tokens": 2, "temperature": 0, "stream": stream, **extra}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
        raw = r.read()
        assert r.status_code == 200, raw
        rid = r.headers["x-contextpilot-request-id"]
    if stream:
        assert raw.endswith(b"data: [DONE]\n\n")
    else:
        assert json.loads(raw)["object"] == "chat.completion"
    return rid


def live(url: str) -> set[str]:
    """The server's live request ids."""
    return set(httpx.get(url + "/requests", timeout=10).json()["request_ids"])


def stats(prx: Proc) -> dict:
    """The proxy's ``GET /stats``."""
    return httpx.get(prx.url + "/stats", timeout=10).json()


def wait_live(url: str, expected: set[str], ours: set[str], timeout: float = 10.0) -> set[str]:
    """Live ids among ``ours`` once they equal ``expected`` (or at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        now = live(url) & ours
        if now == expected or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


#: a long shared text, so prompts are mostly prefix
LONG = " ".join(f"fact {i} about the topic" for i in range(40))
