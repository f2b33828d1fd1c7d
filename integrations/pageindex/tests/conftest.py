"""Offline PageIndex: litellm reads its bundled model cost map (no fetch).
Shared fixtures (the repository's tests/ is on pytest's pythonpath):
the LoCoMo data and the simulated engine."""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from support.locomo import locomo_path, locomo_tests_are_marked  # noqa: E402,F401  (fixtures)
from support.plugin_fixtures import sim_engine  # noqa: E402,F401  (a fixture)
