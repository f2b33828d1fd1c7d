"""Prefix-coherent, token-balanced partition of a batch into replica shards.

Each replica has its own prefix cache, so a block computed on one replica
is not reused on another: requests that share blocks should land on the
same replica, while every replica gets about the same number of tokens.
This module decides which replica each request goes to, from the requests'
signatures (:mod:`contextpilot.distributed.signatures`) alone; it is pure
numpy/scipy (no Ray).

1. **Cut**: find communities by a few rounds of label propagation on the
   request-block graph (token-weighted), order the requests community by
   community (members, and communities by their first member, in the
   planner's popular-block sort, :func:`contextpilot.core.candidates.popular_rank`,
   the one that cuts huge batches into chunks), and cut that sequence into
   ``replicas`` contiguous ranges of equal tokens. A community larger than
   a shard is cut along the popular-block sort.
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

Cost: O(E log E) for E signature entries (key ranking, popular sort), a
few O(E) sparse aggregations for the communities, then per refinement
round one sparse product (E x R) and O(N log N) for N requests.
Memory O(E + (N + distinct blocks) * R).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from contextpilot.core.candidates import popular_rank
from contextpilot.distributed.signatures import Signatures

__all__ = ["DEFAULT_IMBALANCE", "Partition", "partition", "token_cut"]

DEFAULT_IMBALANCE = 0.05
DEFAULT_ROUNDS = 8
#: Label-propagation rounds that find communities for the initial cut.
LPA_ROUNDS = 4


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
    # dense block ids: rank of each key among the distinct keys
    order = np.argsort(sigs.keys, kind="stable")
    sk = sigs.keys[order]
    new = np.r_[True, sk[1:] != sk[:-1]]
    cols = np.empty(len(sk), dtype=np.int64)
    cols[order] = np.cumsum(new) - 1
    nb = int(new.sum())
    freq = np.bincount(cols, minlength=nb)
    a = token_cut(_coherent_order(rows, cols, sigs.weights, freq, n, seed), tokens, replicas)
    moves = _refine(a, rows, cols, sigs.weights, freq, tokens, replicas, (1 + imbalance) * mean, rounds, seed)
    return Partition(a, np.bincount(a, weights=tokens, minlength=replicas), bound, moves)


def _row_argmax(m: sp.csr_matrix) -> np.ndarray:
    """Column of each row's largest entry (ties: the lowest column; -1 for
    an empty row), vectorised. ``m`` has sorted, summed indices."""
    n = m.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    counts = np.diff(m.indptr)
    if not m.nnz:
        return out
    row = np.repeat(np.arange(n), counts)
    top = np.full(n, -np.inf)
    np.maximum.at(top, row, m.data)
    at = np.flatnonzero(m.data == top[row])
    first = at[np.r_[True, row[at][1:] != row[at][:-1]]]
    out[row[first]] = m.indices[first]
    return out


def _coherent_order(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, freq: np.ndarray, n: int, seed: int
) -> np.ndarray:
    """Request order that keeps communities contiguous.

    Communities come from label propagation on the request-block graph:
    each block takes the label most of its holders have, then each request
    the label its blocks carry the most tokens of (ties to the lower label;
    labels start as a seeded random permutation). Communities are ordered
    by their first member in the popular-block sort, and members by that
    sort, so a community larger than a shard is cut along it.
    """
    nb = len(freq)
    pop = popular_rank(rows, cols, n, freq)
    label = np.random.default_rng(seed).permutation(n).astype(np.int64)
    w = weights.astype(np.float64)
    for _ in range(LPA_ROUNDS):
        held = sp.csr_matrix((np.ones(len(rows)), (cols, label[rows])), shape=(nb, n))
        held.sum_duplicates()
        block_label = _row_argmax(held)
        votes = sp.csr_matrix((w, (rows, block_label[cols])), shape=(n, n))
        votes.sum_duplicates()
        new = _row_argmax(votes)
        new[new < 0] = label[new < 0]  # requests whose blocks weigh nothing keep theirs
        if np.array_equal(new, label):
            break
        label = new
    first = np.full(n, n, dtype=np.int64)
    np.minimum.at(first, label, pop)
    return np.lexsort((pop, first[label]))


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
        src, dst = a[cand], best[cand]
        accept = np.zeros(len(cand), dtype=bool)
        # swaps first: moves s -> t paired with moves t -> s, best gains
        # first, as many pairs as keep both shards under the cap
        for s in range(replicas):
            for t in range(s + 1, replicas):
                st_ = np.flatnonzero((src == s) & (dst == t))
                ts_ = np.flatnonzero((src == t) & (dst == s))
                k = min(len(st_), len(ts_))
                if not k:
                    continue
                st_, ts_ = st_[:k], ts_[:k]
                # net tokens into t after the first j pairs, j = 1..k
                net = np.cumsum(tokens[cand[st_]] - tokens[cand[ts_]])
                ok = (load[t] + net <= max(cap, load[t])) & (load[s] - net <= max(cap, load[s]))
                j = int(np.argmin(ok)) if not ok.all() else k  # longest feasible prefix
                if j:
                    accept[st_[:j]] = accept[ts_[:j]] = True
                    load[t] += net[j - 1]
                    load[s] -= net[j - 1]
        # then one-way moves into the room left under the cap
        rest = np.flatnonzero(~accept)
        for t in range(replicas):
            c = rest[dst[rest] == t]
            ok = c[load[t] + np.cumsum(tokens[cand[c]]) <= cap]
            accept[ok] = True
            load[t] += tokens[cand[ok]].sum()
        a[cand[accept]] = dst[accept]
        moved = int(accept.sum())
        moves.append(moved)
        if not moved:
            break
    return moves
