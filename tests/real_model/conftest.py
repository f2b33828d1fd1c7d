"""Real-model tests: the ``real_model`` marker (they need a built
llama-server and a real GGUF; CI runs them in ``.ci/steps/33-real-model-frameworks.sh``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "real_model: needs a built llama-server and a real model (Gemma 3 270M); "
        "fails instead of skipping with CONTEXTPILOT_REAL_MODEL_TESTS=1",
    )
