"""The package top exports a narrow, documented surface; internals live in their modules."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import contextpilot as cp

PUBLIC = {
    "DEFAULT_HINT",
    "Block",
    "ChatSession",
    "ChatStore",
    "ContextPilot",
    "DedupResult",
    "EvictionReport",
    "ReorderResult",
    "__version__",
    "build_messages",
    "default_pilot",
    "optimize",
    "optimize_batch",
    "reset",
    "stable_key",
}


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert set(cp.__all__) == PUBLIC, "changing the public surface is an API decision: update both"
    for name in cp.__all__:
        assert getattr(cp, name) is not None


@pytest.mark.parametrize(
    "name, module",
    [
        ("plan", "contextpilot.core.planner"),
        ("PrefixIndex", "contextpilot.core.index"),
        ("BlockTable", "contextpilot.core.blocks"),
        ("DedupLedger", "contextpilot.core.dedup"),
        ("BoundedLRU", "contextpilot.core.lru"),
        ("validate_contexts", "contextpilot.core.validation"),
    ],
)
def test_internals_come_from_their_modules_not_the_top(name: str, module: str) -> None:
    assert hasattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError):
        getattr(cp, name)


def test_every_public_name_is_documented() -> None:
    for name in PUBLIC - {"__version__", "Block", "DEFAULT_HINT"}:
        assert (getattr(cp, name).__doc__ or "").strip(), name


def test_importing_the_package_stays_light() -> None:
    code = "import sys, contextpilot; print(*(m in sys.modules for m in ('numpy', 'scipy', 'numba')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
