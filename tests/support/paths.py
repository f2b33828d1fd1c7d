"""Where the checkout and its tests are, for tests that start child
processes which must import test code (``support.*`` or a test module).

Invariant: :func:`child_pythonpath` puts the checkout's root (so
``tests.<dir>.<module>`` and ``contextpilot`` import) and ``tests/`` (so
``support.*`` imports) ahead of whatever ``PYTHONPATH`` this process has.
"""

from __future__ import annotations

import os
from pathlib import Path

#: ``tests/`` of this checkout
TESTS = Path(__file__).resolve().parents[1]
#: the checkout's root
REPO = TESTS.parent


def child_pythonpath() -> str:
    """``PYTHONPATH`` for a child process: the checkout, ``tests/``, then
    this process's own ``PYTHONPATH`` (if any). O(1)."""
    parts = [str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)
