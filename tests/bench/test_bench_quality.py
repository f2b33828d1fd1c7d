"""Answer-quality measures of the real-model benchmark (pure functions)."""

import random

import pytest

from contextpilot.bench import quality as Q


def test_normalize_and_f1() -> None:
    assert Q.normalize_answer("The  4 Years!") == "4 years"
    assert Q.token_f1("5 years", "4 years") == pytest.approx(0.5)
    assert Q.token_f1("Caroline is a trans woman", "Transgender woman") == pytest.approx(
        2 * (1 / 4) * (1 / 2) / (1 / 4 + 1 / 2)
    )
    assert Q.token_f1("", "") == 1.0
    assert Q.token_f1("", "x") == 0.0
    assert Q.exact_match("7 May, 2023.", "7 may 2023") == 1.0
    assert Q.exact_match("May 2023", "7 May 2023") == 0.0


def test_short_answer_cuts_at_first_line() -> None:
    assert Q.short_answer("  Paris\nQuestion: where?") == "Paris"
    assert Q.short_answer("\n") == ""


def test_bootstrap_identical_samples_give_a_zero_interval() -> None:
    a = [random.Random(1).random() for _ in range(50)]
    iv = Q.paired_bootstrap(a, a)
    assert (iv.mean, iv.low, iv.high, iv.ties, iv.n) == (0.0, 0.0, 0.0, 50, 50)
    assert iv.verdict() == "includes 0"


def test_bootstrap_detects_a_real_shift_and_brackets_the_mean() -> None:
    rng = random.Random(2)
    a = [rng.gauss(0, 1) for _ in range(300)]
    better = [x + 0.5 + rng.gauss(0, 0.2) for x in a]
    worse = [x - 0.5 + rng.gauss(0, 0.2) for x in a]
    up, down = Q.paired_bootstrap(a, better), Q.paired_bootstrap(a, worse)
    assert up.low <= up.mean <= up.high and down.low <= down.mean <= down.high
    assert up.verdict() == "above 0" and down.verdict() == "below 0"
    noise = [x + rng.gauss(0, 0.2) for x in a]
    assert Q.paired_bootstrap(a, noise).verdict() == "includes 0"


@pytest.mark.parametrize(
    ("a", "b", "kw"),
    [([1.0], [1.0, 2.0], {}), ([], [], {}), ([1.0], [float("nan")], {}), ([1.0], [2.0], {"level": 1.5})],
)
def test_bootstrap_rejects_bad_input(a, b, kw) -> None:
    with pytest.raises(ValueError):
        Q.paired_bootstrap(a, b, **kw)


def test_engine_orderings_keep_retrieval_and_name_unknown_ones() -> None:
    from contextpilot.bench.methods import External
    from contextpilot.bench.real_model import ordering_names

    ref = [External("reference", "unused")]
    everything = ordering_names(ref)
    assert everything[0] == "retrieval" and "reference-online" in everything
    assert "contextpilot-online" in everything
    picked = ordering_names(ref, "contextpilot-online, reference-online")
    assert picked == ["retrieval", "reference-online", "contextpilot-online"]
    with pytest.raises(ValueError, match="unknown reference-online"):
        ordering_names([], "reference-online")
