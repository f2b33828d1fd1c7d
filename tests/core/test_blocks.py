from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from contextpilot.core.blocks import BlockTable, make_token_counter, stable_key
from contextpilot.core.validation import validate_contexts


def test_stable_key_is_stable_across_processes():
    code = "from contextpilot.core.blocks import stable_key; print(stable_key('hello'), stable_key(7))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert outs == {f"{stable_key('hello')} {stable_key(7)}\n"}


def test_int_and_str_blocks_are_distinct():
    assert stable_key(5) != stable_key("5")
    t = BlockTable()
    assert t.intern(5) != t.intern("5")
    assert t.intern(5) == t.intern(np.int64(5))


@pytest.mark.parametrize(
    "bad, where",
    [
        ([[1, 2], [3, None]], "contexts[1][1]"),
        ([[1, 2.0]], "contexts[0][1]"),
        ([[1, 2], ["a"]], "contexts[1][0]"),
        ([["a"], [True]], "contexts[1][0]"),
        ([[], [1]], "contexts[0]"),
        ([[1], "abc"], "contexts[1]"),
    ],
)
def test_validation_names_the_position(bad, where):
    with pytest.raises(ValueError) as e:
        validate_contexts(bad)
    assert where in str(e.value)


@pytest.mark.parametrize("one_shot_rows", [False, True])
def test_validation_of_one_shot_iterables_loses_nothing(one_shot_rows):
    # numpy ints send the check down its slow path, which reads the batch again:
    # a generator batch (or generator rows) must still come out whole
    rows = [[1, 2], [3, np.int64(4)], [5], [6, 7]]

    def batch():
        return ((iter(r) if one_shot_rows else r) for r in rows)

    assert validate_contexts(batch()) == [[1, 2], [3, 4], [5], [6, 7]]
    with pytest.raises(ValueError) as e:
        validate_contexts(iter([iter([1]), iter([np.int64(2)]), iter(["x"])]))
    assert "contexts[2][0]" in str(e.value)


def test_validation_rejects_non_list_batch():
    for bad in ("abc", 5, None):
        with pytest.raises(ValueError):
            validate_contexts(bad)


def test_token_counters():
    assert make_token_counter(None)("abcd" * 10) == 10
    assert make_token_counter({"x": 7})("x") == 7

    class Tok:
        def encode(self, text):
            return text.split()

    assert make_token_counter(Tok())("a b c") == 3
    assert make_token_counter(lambda b: 42)("whatever") == 42
    t = BlockTable(lambda b: -1)
    with pytest.raises(ValueError, match="token counter"):
        t.intern("x")
