"""The README's example runs as written, and its chat cannot mislead the model."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from llama_index.postprocessor.contextpilot import DEFAULT_NOTE

from contextpilot.plugins import find_notes, unseen_notes


def test_readme_example_runs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Ten-line example\s+```python\n(.*?)```", readme, re.S).group(1)
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), scope)
    answers = out.getvalue().split("\n=====\n")[:2]  # MockLLM answers with the prompt it got
    assert len(answers) == 2 and all("Where is" in a for a in answers)
    texts = {nid: n.get_content() for nid, n in scope["index"].docstore.docs.items()}
    assert not find_notes(answers[0], DEFAULT_NOTE)
    assert find_notes(answers[1], DEFAULT_NOTE)  # turn 1's passages are in the history turn 2 carries
    assert all(unseen_notes([a], texts, DEFAULT_NOTE) == [] for a in answers)
