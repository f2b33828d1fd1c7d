"""The README example runs as written, and its chat cannot mislead the model."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from contextpilot.plugins import DEFAULT_NOTE, find_notes, unseen_notes


def test_readme_example_runs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Example.*?```python\n(.*?)```", readme, re.S).group(1)
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), scope)
    printed = out.getvalue()
    assert "[hb:0002]\n" in printed and find_notes(printed, DEFAULT_NOTE) == ["hb:0001"]
    sel = scope["cpi"].select([("hb", "0001"), ("hb", "0002")])
    prompt = [m["content"] for m in scope["prompt"]]
    assert unseen_notes(prompt, dict(zip(sel.labels, sel.blocks)), DEFAULT_NOTE) == []
