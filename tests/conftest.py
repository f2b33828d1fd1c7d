"""Fixtures for every test folder: the LoCoMo data and the simulated engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from contextpilot.bench.workloads import default_locomo_path

if TYPE_CHECKING:
    from support.procs import Proc

# skip accounting and per-run counts for CI (.ci/pytest, on pytest's pythonpath via pyproject.toml)
pytest_plugins = ["contextpilot_ci"]


@pytest.fixture(scope="session")
def locomo_path():
    path = default_locomo_path()
    if path is None:
        pytest.skip("LoCoMo data not found (../shared/data/locomo10.json or $CONTEXTPILOT_LOCOMO)")
    return path


@pytest.fixture(autouse=True)
def _locomo_tests_are_marked(request):
    """A test that reads the LoCoMo data says so (marker ``locomo``), so CI can account for its skip."""
    if "locomo_path" in request.fixturenames and request.node.get_closest_marker("locomo") is None:
        pytest.fail(f"{request.node.nodeid} uses the LoCoMo data: mark it @pytest.mark.locomo")


@pytest.fixture(scope="module")
def eng() -> Iterator[Proc]:
    """The simulated engine (``contextpilot.sim.engine``) as a real process on
    127.0.0.1, one per test module."""
    pytest.importorskip("fastapi")
    from support.procs import engine  # here, not at the top: suites without httpx load this file too

    with engine() as e:
        yield e
