"""Prefix-coherent, token-balanced partition of a batch into replica shards.

Each replica has its own prefix cache, so a block computed on one replica
is not reused on another: requests that share blocks should land on the
same replica, while every replica gets about the same number of tokens.
This module decides which replica each request goes to, from the requests'
signatures (:mod:`contextpilot.distributed.signatures`) alone; it is pure
numpy/scipy (no Ray).

1. **Cut**: sort the requests by similarity (the planner's popular-block
   sort, :func:`contextpilot.core.cluster.popular_rank`, the same one that
   cuts huge batches into chunks) and cut the sorted sequence into
   ``replicas`` contiguous ranges of equal tokens.
2. **Refine**: a few rounds of balanced label propagation. Request ``i``'s
   affinity to shard ``s`` is ``sum_b w(b) * c(b, s) / (f(b) - 1)`` over
   its sampled blocks ``b``, with ``c(b, s)`` the *other* requests holding
   ``b`` in ``s`` and ``f(b)`` all requests holding it: the token-weighted
   share of its blocks' other holders that ``s`` has. In each round a
   random half of the requests may move to their best shard, best gains
   first, while the shard stays under its cap.

**Balance (the bound tests check)**: with ``T`` total tokens, ``R``
replicas, ``t_max`` the largest request and ``eps = imbalance``, every
shard ends with at most ``max((1 + eps) * T / R, T / R + t_max)`` tokens.
The cut gives each shard at most ``T / R + t_max`` (a request belongs to
the range holding its midpoint); refinement only moves a request into a
shard while that shard's tokens (before the round's departures) plus the
moves accepted into it stay within ``(1 + eps) * T / R``. So whenever no
request exceeds ``eps * T / R`` (any batch of more than a few requests per
replica), ``max shard tokens / mean <= 1 + eps``.

Cost: O(E log E) for E signature entries (one sort, one key unique), then
per round one sparse product (E x R) and O(N log N) for N requests.
Memory O(E + (N + distinct blocks) * R).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from contextpilot.core.cluster import popular_rank
from contextpilot.distributed.signatures import Signatures

__all__ = ["DEFAULT_IMBALANCE", "Partition", "partition", "token_cut"]

DEFAULT_IMBALANCE = 0.05
DEFAULT_ROUNDS = 8


@dataclass
class Partition:
    #: replica of each request (int64, length N)
    assignment: np.ndarray
    #: tokens per replica
    loads: np.ndarray
    #: the stated bound on ``max(loads) / mean(loads)`` (see module docstring)
    bound: float
    #: requests moved by refinement, per round
    moves: list[int]

    @property
    def replicas(self) -> int:
        return len(self.loads)

    @property
    def imbalance(self) -> float:
        """``max(loads) / mean(loads)`` (1.0 for an empty batch)."""
        mean = float(self.loads.mean()) if len(self.loads) else 0.0
        return float(self.loads.max()) / mean if mean > 0 else 1.0

    def members(self, replica: int) -> np.ndarray:
        """Request indices of one replica, ascending."""
        return np.flatnonzero(self.assignment == replica)


def token_cut(order: np.ndarray, tokens: np.ndarray, replicas: int) -> np.ndarray:
    """Assignment cutting ``order`` into ``replicas`` contiguous ranges of
    about equal tokens: a request goes to the range holding its token
    midpoint, so each range holds at most ``T / R + max(tokens)``."""
    n = len(order)
    out = np.zeros(n, dtype=np.int64)
    t = tokens[order].astype(np.float64)
    total = float(t.sum())
    if not n or total <= 0:
        out[order] = np.arange(n) * replicas // max(n, 1)  # no tokens: equal counts
        return out
    mid = np.cumsum(t) - t / 2
    out[order] = np.minimum(np.floor(mid * replicas / total), replicas - 1).astype(np.int64)
    return out


def partition(
    sigs: Signatures,
    replicas: int,
    *,
    imbalance: float = DEFAULT_IMBALANCE,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
) -> Partition:
    """Assign each request to one of ``replicas`` shards (see module doc).

    Deterministic for the same signatures, ``replicas``, ``imbalance``,
    ``rounds`` and ``seed``. ``rounds=0`` keeps the plain similarity cut.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) or replicas < 1:
        raise ValueError(f"replicas must be an int >= 1, got {replicas!r}")
    if not (imbalance >= 0) or not np.isfinite(imbalance):
        raise ValueError(f"imbalance must be a finite number >= 0, got {imbalance!r}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    replicas = int(replicas)
    n = len(sigs)
    tokens = sigs.tokens.astype(np.int64)
    total = float(tokens.sum())
    t_max = float(tokens.max(initial=0))
    mean = total / replicas
    bound = max(1.0 + imbalance, 1.0 + t_max / mean) if mean > 0 else 1.0
    if n == 0 or replicas == 1:
        a = np.zeros(n, dtype=np.int64)
        return Partition(a, np.bincount(a, weights=tokens, minlength=replicas), bound, [])

    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(sigs.indptr))
    keys, cols = np.unique(sigs.keys, return_inverse=True)
    cols = cols.ravel().astype(np.int64)
    nb = len(keys)
    freq = np.bincount(cols, minlength=nb)
    a = token_cut(np.argsort(popular_rank(rows, cols, n, freq), kind="stable"), tokens, replicas)
    moves = _refine(a, rows, cols, sigs.weights, freq, tokens, replicas, (1 + imbalance) * mean, rounds, seed)
    return Partition(a, np.bincount(a, weights=tokens, minlength=replicas), bound, moves)


def _refine(
    a: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray,
    freq: np.ndarray,
    tokens: np.ndarray,
    replicas: int,
    cap: float,
    rounds: int,
    seed: int,
) -> list[int]:
    """Balanced label propagation, in place on ``a``; returns moves per round."""
    n, nb = len(a), len(freq)
    if not len(rows):
        return []
    # entry (i, b): w(b) / (f(b) - 1); blocks held once weigh nothing after
    # the request's own count is taken out
    val = weights.astype(np.float64) / np.maximum(freq[cols] - 1, 1)
    m = sp.csr_matrix((val, (rows, cols)), shape=(n, nb))
    own = np.bincount(rows, weights=val, minlength=n)
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    moves: list[int] = []
    for _ in range(rounds):
        held = np.bincount(cols * replicas + a[rows], minlength=nb * replicas).reshape(nb, replicas)
        score = m @ held.astype(np.float64)  # (n, R)
        score[idx, a] -= own
        best = score.argmax(axis=1)
        cur = score[idx, a]
        gain = score[idx, best] - cur
        want = (gain > 1e-9 * (1.0 + np.abs(cur))) & (rng.random(n) < 0.5)
        cand = np.flatnonzero(want)
        cand = cand[np.argsort(-gain[cand], kind="stable")]
        load = np.bincount(a, weights=tokens, minlength=replicas)
        moved = 0
        targets = best[cand]
        for s in range(replicas):
            c = cand[targets == s]
            ok = c[load[s] + np.cumsum(tokens[c]) <= cap]
            a[ok] = s
            moved += len(ok)
        moves.append(moved)
        if not moved:
            break
    return moves
