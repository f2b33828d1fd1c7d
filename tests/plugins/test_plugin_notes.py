"""contextpilot.plugins.notes: the history-checked dedup every plugin uses,
and the checker its tests run on prompts."""

from __future__ import annotations

import random

import pytest

from contextpilot.plugins import (
    DEFAULT_NOTE,
    History,
    check_note_template,
    find_notes,
    render_block,
    render_turn,
    settle_history,
    unseen_notes,
)


def test_render_turn_notes_only_what_the_history_or_the_turn_holds():
    history = History(["hello\n\n" + render_block("a", "alpha") + "\n\nbye"], DEFAULT_NOTE)
    turn = render_turn(["a", "b", "b", "c"], ["alpha", "beta", "beta", "gamma"], history, DEFAULT_NOTE)
    assert turn.noted == frozenset({0, 2})
    assert (
        turn.content.split("\n\n")
        == [
            "[a] (given earlier in this conversation)",
            "[b]",
            "beta",
        ][:1]
        + turn.content.split("\n\n")[1:]
    )
    assert "[b]\nbeta" in turn.content and "[c]\ngamma" in turn.content
    assert find_notes(turn.content, DEFAULT_NOTE) == ["a", "b"]
    no_dedup = render_turn(["a"], ["alpha"], history, DEFAULT_NOTE, dedup=False)
    assert no_dedup.noted == frozenset() and no_dedup.content == "[a]\nalpha"


def test_same_label_other_text_is_not_held():
    history = History([render_block("a", "old")], DEFAULT_NOTE)
    assert render_turn(["a"], ["new"], history, DEFAULT_NOTE).noted == frozenset()


def test_a_note_never_counts_as_its_text():
    tpl = '[{label}: "{preview}"]'
    history = History(['[a: "alpha"]'], tpl)  # a note quoting a short text in full
    assert not history.holds("alpha")
    assert History(['[a: "alpha"] and alpha itself'], tpl).holds("alpha")


def test_no_match_across_two_messages():
    assert not History(["[a]", "alpha"], DEFAULT_NOTE).holds("[a]\nalpha")
    assert not History(["x"], DEFAULT_NOTE).holds("")


def test_randomised_turns_never_leave_a_note_without_its_text():
    """Many conversations over a small corpus, with histories that randomly
    forget old turns: every rendered prompt passes the checker, and the
    checker does catch a note whose turn was dropped."""
    rng = random.Random(7)
    corpus = {f"d{i}": f"text number {i}\nsecond line" for i in range(12)}
    blocks = {k: render_block(k, v) for k, v in corpus.items()}
    caught = 0
    for _ in range(200):
        history: list[str] = []
        for _turn in range(rng.randint(1, 6)):
            if history and rng.random() < 0.3:
                history = history[rng.randint(1, len(history)) :]  # a window drops old turns
            labels = rng.sample(sorted(corpus), rng.randint(1, 5))
            labels += rng.sample(labels, rng.randint(0, 1))  # a repeat within the turn
            turn = render_turn(
                labels, [corpus[k] for k in labels], History(history, DEFAULT_NOTE), DEFAULT_NOTE
            )
            # a window may have kept a turn whose notes point into dropped ones
            caught += bool(unseen_notes([*history, turn.content], blocks, DEFAULT_NOTE))
            history = [*settle_history(history, turn.content, DEFAULT_NOTE), turn.content]
            assert unseen_notes(history, blocks, DEFAULT_NOTE) == []
            if turn.noted and len(history) > 1:
                # the same turn shown without its history: notes to history text dangle
                caught += bool(unseen_notes([turn.content], blocks, DEFAULT_NOTE))
    assert caught > 20


def test_settle_history_marks_notes_whose_copy_left():
    kept = "[a] (given earlier in this conversation)\n\n[b] (given earlier in this conversation)"
    out = settle_history(["x", kept], "[b]\nbeta", DEFAULT_NOTE)
    assert out[0] == "x" and out[1] == "[a] (no longer in this conversation)\n\n" + kept.split("\n\n")[1]
    same = ["[a]\nalpha", "[a] (given earlier in this conversation)"]
    assert all(x is y for x, y in zip(settle_history(same, "", DEFAULT_NOTE), same))


def test_note_templates_are_checked():
    assert check_note_template("<{label}>") == "<{label}>"
    for bad in ("(seen)", "{label}{label}", "{position}", "{label", 5, "{label}\x00"):
        with pytest.raises(ValueError, match="note_template"):
            check_note_template(bad)


def test_unknown_label_is_unseen():
    assert unseen_notes(["[zz] (given earlier in this conversation)"], {}, DEFAULT_NOTE) == ["zz"]
    assert unseen_notes(
        ["[a]\nalpha", "[a] (given earlier in this conversation)"], lambda k: None, DEFAULT_NOTE
    ) == ["a"]


def test_plugin_planner_alias_still_imports():
    from contextpilot.plugin_planner import Planner
    from contextpilot.plugins import Planner as P

    assert Planner is P
