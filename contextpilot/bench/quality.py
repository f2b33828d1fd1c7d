"""Answer-quality measures for the real-model benchmark.

* :func:`token_f1` / :func:`exact_match`: SQuAD-style comparison of a
  generated short answer with LoCoMo's gold answer (lower-cased, punctuation
  and articles dropped, whitespace collapsed).
* :func:`paired_bootstrap`: the mean of per-question differences between two
  conditions (``b - a``) with a percentile bootstrap interval. Pairing is
  what makes a few hundred questions enough: both conditions answer the
  same question, so question difficulty cancels.

Pure functions, numpy only; nothing here talks to an engine.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Interval", "exact_match", "normalize_answer", "paired_bootstrap", "short_answer", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces."""
    text = str(text).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def short_answer(generated: str) -> str:
    """A generated continuation cut to its first line: a base model keeps
    writing (the next 'Question:', more dialogue) after answering."""
    return generated.strip().split("\n", 1)[0].strip()


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation; 1.0
    when both normalise to nothing, 0.0 when only one does."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


@dataclass(frozen=True)
class Interval:
    """Mean paired difference and its bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int
    #: questions where both conditions scored the same
    ties: int

    def verdict(self) -> str:
        """'above 0', 'includes 0' or 'below 0' (the interval against zero)."""
        if self.low > 0:
            return "above 0"
        if self.high < 0:
            return "below 0"
        return "includes 0"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict()}


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Mean of ``b[i] - a[i]`` with a percentile bootstrap interval.

    O(resamples * n) time in numpy. ``a`` and ``b`` must be the same
    questions in the same order.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    if not len(a):
        raise ValueError("paired_bootstrap needs at least one pair")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError("paired samples contain NaN or infinity")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(resamples, len(d)))
    means = d[idx].mean(axis=1)
    tail = (1 - level) / 2
    return Interval(
        mean=float(d.mean()),
        low=float(np.quantile(means, tail)),
        high=float(np.quantile(means, 1 - tail)),
        n=len(d),
        ties=int(np.count_nonzero(d == 0)),
    )
