from __future__ import annotations

import pytest

from contextpilot.bench.workloads import default_locomo_path

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
