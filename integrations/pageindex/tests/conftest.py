"""Offline PageIndex: litellm reads its bundled model cost map (no fetch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
# the repository's tests/ on sys.path: the suite imports its shared helpers as support.*
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
