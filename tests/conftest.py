"""Fixtures for every test folder: the LoCoMo data and the simulated engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# the LoCoMo data and the check that its tests are marked, shared with the plugins' suites
from support.locomo import locomo_path, locomo_tests_are_marked  # noqa: F401  (fixtures)

if TYPE_CHECKING:
    from support.procs import Proc

# skip accounting and per-run counts for CI (.ci/pytest, on pytest's pythonpath via pyproject.toml)
pytest_plugins = ["contextpilot_ci"]


@pytest.fixture(scope="module")
def eng() -> Iterator[Proc]:
    """The simulated engine (``contextpilot.sim.engine``) as a real process on
    127.0.0.1, one per test module."""
    pytest.importorskip("fastapi")
    from support.procs import engine  # here, not at the top: suites without httpx load this file too

    with engine() as e:
        yield e
