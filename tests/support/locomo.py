"""The LoCoMo data (Maharana et al., ACL 2024) for the tests that read it.

Shared by the root suite (tests/conftest.py) and the plugins' suites
(their conftest.py), which import these fixtures:

- :func:`locomo_path`: the data file; the test skips when it is missing
  (and CI's skip accounting, ``.ci/pytest/contextpilot_ci.py``, turns that
  skip into a failure unless the run declares ``locomo`` unavailable);
- :func:`locomo_tests_are_marked`: a test that uses :func:`locomo_path`
  without the ``locomo`` marker fails, so no such skip goes unaccounted;
- :func:`locomo_sample`: one conversation of the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contextpilot.bench.workloads import default_locomo_path

__all__ = ["locomo_path", "locomo_sample", "locomo_tests_are_marked"]


@pytest.fixture(scope="session")
def locomo_path() -> Path:
    """``$CONTEXTPILOT_LOCOMO`` or ``../shared/data/locomo10.json``; skips without it."""
    path = default_locomo_path()
    if path is None:
        pytest.skip("LoCoMo data not found (../shared/data/locomo10.json or $CONTEXTPILOT_LOCOMO)")
    return path


@pytest.fixture(autouse=True)
def locomo_tests_are_marked(request: pytest.FixtureRequest) -> None:
    """A test that reads the LoCoMo data says so (marker ``locomo``), so CI can account for its skip."""
    if "locomo_path" in request.fixturenames and request.node.get_closest_marker("locomo") is None:
        pytest.fail(f"{request.node.nodeid} uses the LoCoMo data: mark it @pytest.mark.locomo")


def locomo_sample(path: Path, index: int = 0) -> dict[str, Any]:
    """Conversation ``index`` of the file: its ``sample_id``, ``conversation``,
    ``observation`` and ``qa``. Reads the whole file (about 3 MB)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))[index]
