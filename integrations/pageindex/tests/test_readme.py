"""The README example runs as written, and its chat cannot mislead the model."""

from __future__ import annotations

from pathlib import Path

from contextpilot.plugins import DEFAULT_NOTE, find_notes, unseen_notes

from support.readme import run_example  # tests/support (on sys.path: conftest.py)


def test_readme_example_runs():
    printed, scope = run_example(Path(__file__).parents[1] / "README.md", "## Example")
    assert "[hb:0002]\n" in printed and find_notes(printed, DEFAULT_NOTE) == ["hb:0001"]
    sel = scope["cpi"].select([("hb", "0001"), ("hb", "0002")])
    prompt = [m["content"] for m in scope["prompt"]]
    assert unseen_notes(prompt, dict(zip(sel.labels, sel.blocks)), DEFAULT_NOTE) == []
