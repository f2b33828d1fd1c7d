"""The README's example runs as written, and its chat cannot mislead the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from contextpilot.plugins import DEFAULT_NOTE, find_notes, render_block, unseen_notes

from support.readme import run_example  # tests/support (on sys.path: conftest.py)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_readme_example_runs():
    printed, scope = run_example(Path(__file__).parents[2] / "README.md", "## Ten-line example")
    assert printed.count("human: Documents:") == 2 and printed.count("ai: (answer)") == 2
    stored = [m.text for m in scope["histories"]["user-1"].messages]
    corpus = {k: render_block(k, v["text"]) for k, v in scope["store"].store.items()}
    # the second turn notes what the first sent, and every note's text is in that prompt
    assert find_notes(stored[2], DEFAULT_NOTE) and unseen_notes(stored, corpus, DEFAULT_NOTE) == []
