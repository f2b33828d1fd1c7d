from __future__ import annotations

import pytest

from contextpilot.bench.workloads import default_locomo_path


@pytest.fixture(scope="session")
def locomo_path():
    path = default_locomo_path()
    if path is None:
        pytest.skip("LoCoMo data not found (../shared/data/locomo10.json or $CONTEXTPILOT_LOCOMO)")
    return path
