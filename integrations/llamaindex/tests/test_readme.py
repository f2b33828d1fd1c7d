"""The README's example runs as written and shows contextpilot's effect."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path


def test_readme_example_runs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Ten-line example\s+```python\n(.*?)```", readme, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    printed = out.getvalue()
    assert printed.count("Query: Where is") == 2
    assert "already provided earlier in this conversation" in printed
