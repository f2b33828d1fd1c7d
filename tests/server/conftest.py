"""Fixtures of the server tests: a real contextpilot server process in front
of the module's simulated engine (``eng``, tests/conftest.py), and an HTTP
client on it whose index starts empty. A module needing other server flags
defines its own ``srv`` (and ``http``), which takes precedence."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support.procs import Proc, server


@pytest.fixture(scope="module")
def srv(eng: Proc) -> Iterator[Proc]:
    """The server with its default flags, one per test module."""
    with server(eng.url) as s:
        yield s


@pytest.fixture()
def http(srv: Proc) -> Iterator[httpx.Client]:
    """A client on ``srv``, after ``POST /reset`` (each test starts from an empty index)."""
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        c.post("/reset")
        yield c
