"""Offline mem0: telemetry off, every file under one throw-away folder
(tmpfs when available: qdrant's local mode and mem0's history database
commit on every add, which is slow on a real disk)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

_ROOT = tempfile.mkdtemp(prefix="cp-mem0-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
atexit.register(shutil.rmtree, _ROOT, True)
# read by mem0 at import time: set before any test module imports it
os.environ["MEM0_TELEMETRY"] = "False"
os.environ["MEM0_DIR"] = os.path.join(_ROOT, "mem0-home")

import pytest  # noqa: E402
from _support import ModelUrls, make_memory  # noqa: E402

# the repository's tests/ is on pytest's pythonpath (pyproject.toml): shared fixtures
from support.locomo import locomo_path, locomo_tests_are_marked  # noqa: E402,F401  (fixtures)
from support.plugin_fixtures import sim_engine  # noqa: E402,F401  (a fixture)


@pytest.fixture
def store_dir(request: pytest.FixtureRequest) -> str:
    path = tempfile.mkdtemp(dir=_ROOT, prefix=request.node.name[:40] + "-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def memory(store_dir: str):
    m = make_memory(store_dir)
    yield m
    m.vector_store.client.close()
    m.close()


@pytest.fixture
def ranked_memory(store_dir: str):
    """mem0 with the contextpilot reranker configured the mem0 way."""
    import contextpilot_mem0  # noqa: F401  (registers the provider)

    m = make_memory(store_dir, reranker={"provider": "contextpilot", "config": {}})
    yield m
    m.vector_store.client.close()
    m.close()


@pytest.fixture
def async_memory(store_dir: str):
    import contextpilot_mem0  # noqa: F401

    m = make_memory(
        os.path.join(store_dir, "async"), asynchronous=True, reranker={"provider": "contextpilot"}
    )
    yield m
    m.vector_store.client.close()
    m.close()


@pytest.fixture(scope="session")
def llama_servers() -> Iterator[ModelUrls]:
    """Gemma 3 270M on two real llama-servers (skips loudly, or fails under CI, when absent)."""
    from _support import llama_servers

    with llama_servers() as urls:
        yield urls
