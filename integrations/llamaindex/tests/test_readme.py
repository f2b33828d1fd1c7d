"""The README's example runs as written, and its chat cannot mislead the model."""

from __future__ import annotations

from pathlib import Path

from llama_index.postprocessor.contextpilot import DEFAULT_NOTE

from contextpilot.plugins import find_notes, unseen_notes

from support.readme import run_example  # tests/support (on sys.path: conftest.py)


def test_readme_example_runs():
    printed, scope = run_example(Path(__file__).parents[1] / "README.md", "## Ten-line example")
    answers = printed.split("\n=====\n")[:2]  # MockLLM answers with the prompt it got
    assert len(answers) == 2 and all("Where is" in a for a in answers)
    texts = {nid: n.get_content() for nid, n in scope["index"].docstore.docs.items()}
    assert not find_notes(answers[0], DEFAULT_NOTE)
    assert find_notes(answers[1], DEFAULT_NOTE)  # turn 1's passages are in the history turn 2 carries
    assert all(unseen_notes([a], texts, DEFAULT_NOTE) == [] for a in answers)
