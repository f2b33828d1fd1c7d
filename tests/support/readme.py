"""Run a README's example as written: the first ``python`` code block after
a heading, executed in a fresh namespace with its printed output captured.

The plugins' suites (integrations/*/tests/test_readme.py) use it, so the
example a user copies is the one the tests run. Raises ``LookupError`` when
the README has no such block (a renamed heading fails the test, it does not
skip it).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

__all__ = ["run_example"]


def run_example(readme: Path, heading: str) -> tuple[str, dict[str, Any]]:
    """Execute the first ```python block after the line starting with
    ``heading`` (plain text, e.g. ``"## Ten-line example"``) in ``readme``;
    returns (what it printed, its globals). Exceptions of the example propagate."""
    text = readme.read_text(encoding="utf-8")
    found = re.search(re.escape(heading) + r".*?```python\n(.*?)```", text, re.S)
    if found is None:
        raise LookupError(f"{readme}: no python block after {heading!r}")
    out = io.StringIO()
    scope: dict[str, Any] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(found.group(1), str(readme), "exec"), scope)
    return out.getvalue(), scope
