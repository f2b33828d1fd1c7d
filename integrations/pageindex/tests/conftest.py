"""Offline PageIndex: litellm reads its bundled model cost map (no fetch)."""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
