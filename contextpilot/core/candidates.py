"""Candidate partners for greedy merging: which requests probably share most.

Given requests as sets of planning ids with token weights, finds for each
request up to ``k`` likely best partners from the block -> requests
inverted index, never an all-pairs matrix: blocks whose posting lists are
short enough to fit a pair budget pair every holder (one sparse product:
exact overlaps on small batches); longer lists pair each request only with
its ``WINDOW`` neighbours in two similarity sorts (min-hash and most popular
blocks), through its ``RAREST`` rarest blocks. On batches of at most
``EXACT_VALUES_MAX`` requests, and when it costs at most ``EXACT_WORK_MAX``
block tests, every pair found is valued exactly, the long-list blocks it
shares included (:func:`shared_weight`), so partners are ranked by their
true overlap; otherwise a pair's value counts only the blocks through which
it was found (an estimate the planner makes exact for the edges it keeps).
Also the similarity sort (:func:`popular_rank`) that cuts huge batches into
chunks and replica shards.

Invariants: every returned pair ``(a, b)`` has ``a < b`` and appears once;
pairs with no positive overlap are never returned; ties go to the lower id
whatever the sparse backend. Cost: O(P log P) numpy work for P posting
entries plus at most ``EXACT_WORK_MAX`` block tests; memory O(P +
``PAIR_BUDGET`` + ``SHARED_STEP``) plus, when short, a dense bit matrix of
at most ``BITS_BUDGET`` bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import scipy.sparse as sp

from contextpilot.core.overlap import overlap_matrix
from contextpilot.core.pair_values import exact_work, shared_weight, wide, with_long_blocks

__all__ = [
    "PAIR_BUDGET",
    "RAREST",
    "WINDOW",
    "candidate_edges",
    "incidence",
    "popular_rank",
    "shared_weight",
    "EXACT_VALUES_MAX",
    "EXACT_WORK_MAX",
]

#: Pairs generated from posting lists per candidate search (memory bound).
PAIR_BUDGET = 4_000_000
#: Posting lists too long for the budget pair each request with this many
#: followers in each similarity sort.
WINDOW = 3
#: Long posting lists are paired only through each request's rarest blocks.
RAREST = 12


def incidence(sets: Sequence[frozenset[int]], compact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)``: one entry per (request, block), grouped by request.

    ``compact``: int32 arrays when the request count and every block id
    (ids are >= 0) fit, else int64 (half the memory and bandwidth of the
    candidate search's biggest arrays); a caller then widens
    (:func:`~contextpilot.core.pair_values.wide`) before any product or
    sum that could pass 2**31. O(entries)."""
    lengths = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
    total = int(lengths.sum())
    cols = None
    if compact and len(sets) < 2**31:
        try:
            cols = np.fromiter(chain.from_iterable(sets), dtype=np.int32, count=total)
        except OverflowError:  # an id past int32: the whole batch goes wide
            cols = None
    if cols is None:
        cols = np.fromiter(chain.from_iterable(sets), dtype=np.int64, count=total)
    rows = np.repeat(np.arange(len(sets), dtype=cols.dtype), lengths)
    return rows, cols


def _full_pair_limit(lens: np.ndarray, budget: int) -> int:
    """Largest posting length whose lists can all be paired exhaustively
    while the total pair count (windowed lists included) stays in budget."""
    if not len(lens):
        return 1
    ls = np.sort(lens)
    full = np.cumsum(ls * (ls - 1) // 2)
    windowed = WINDOW * (ls.sum() - np.cumsum(ls))
    ok = np.flatnonzero(full + windowed <= budget)
    return int(ls[ok[-1]]) if len(ok) else 1


def _posting_pairs(
    rows: np.ndarray, cols: np.ndarray, key: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a, b, block) from posting lists sorted by ``key``: every pair
    in lists of length <= ``limit``, neighbours within ``WINDOW`` in longer
    ones. Work is proportional to the pairs produced."""
    order = np.argsort(wide(cols) * (int(key.max(initial=0)) + 1) + key[rows], kind="stable")
    r, c = rows[order], cols[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    lens = np.diff(np.r_[starts, len(c)])
    pos = np.arange(len(c)) - np.repeat(starts, lens)
    plen = np.repeat(lens, lens)
    reach = np.where(plen <= limit, plen - 1 - pos, np.minimum(WINDOW, plen - 1 - pos))
    active = np.flatnonzero(reach > 0)
    pa, pb, pc = [], [], []
    off = 1
    while len(active):
        pa.append(r[active])
        pb.append(r[active + off])
        pc.append(c[active])
        off += 1
        active = active[reach[active] >= off]
    if not pa:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e
    return np.concatenate(pa), np.concatenate(pb), np.concatenate(pc)


def _rarest(rows: np.ndarray, cols: np.ndarray, freq: np.ndarray, r: int) -> np.ndarray:
    """Mask of each request's ``r`` rarest blocks (the most telling ones)."""
    nb = len(freq)
    o = np.argsort(wide(rows) * (int(freq.max(initial=0)) + 1) * nb + freq[cols] * nb + cols, kind="stable")
    ro = rows[o]
    first = np.flatnonzero(np.r_[True, ro[1:] != ro[:-1]])
    rank = np.arange(len(o)) - np.repeat(first, np.diff(np.r_[first, len(o)]))
    mask = np.zeros(len(rows), dtype=bool)
    mask[o[rank < r]] = True
    return mask


def _min_hash_key(rows: np.ndarray, cols: np.ndarray, n: int, n_blocks: int, seed: int) -> np.ndarray:
    """Rank of each request in a sort by two min-hashes of its blocks:
    requests with a high Jaccard overlap tend to share both."""
    rng = np.random.default_rng(seed)
    keys = []
    for _ in range(2):
        perm = rng.permutation(n_blocks)
        mh = np.full(n, n_blocks, dtype=np.int64)
        np.minimum.at(mh, rows, perm[cols])
        keys.append(mh)
    order = np.lexsort((keys[1], keys[0]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def popular_rank(rows: np.ndarray, cols: np.ndarray, n: int, freq: np.ndarray) -> np.ndarray:
    """Rank of each request in a sort by its three most frequent blocks:
    the similarity sort that cuts huge batches into chunks (planner) and
    into replica shards (``contextpilot.distributed``). ``rows``/``cols``:
    one entry per (request, block); ``freq``: each block's count. O(P) for
    P entries when rows are grouped and of similar length, else a sort."""
    nb = len(freq)
    brank = np.empty(nb, dtype=np.int64)
    brank[np.lexsort((np.arange(nb), -freq))] = np.arange(nb)  # 0 = most frequent
    top = _three_smallest(rows, brank[cols], n, nb)
    if top is None:
        o = np.argsort(wide(rows) * nb + brank[cols], kind="stable")
        r, c = rows[o], brank[cols[o]]
        first = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
        lens = np.diff(np.r_[first, len(r)])
    key = np.zeros(n, dtype=np.int64)
    for j in range(3):  # base nb+1 digits; a missing block sorts first
        if top is not None:
            digit = np.where(top[:, j] < nb, top[:, j] + 1, 0).astype(np.int64)
        else:
            digit = np.zeros(n, dtype=np.int64)
            has = lens > j
            digit[r[first[has]]] = c[first[has] + j] + 1
        key = key * (nb + 1) + digit if (nb + 1) ** 3 < 2**62 else np.maximum(key, digit)
    order = np.argsort(key, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def _three_smallest(rows: np.ndarray, vals: np.ndarray, n: int, nb: int) -> np.ndarray | None:
    """Each row's three smallest ``vals`` ascending, ``nb`` where it has
    fewer, as an ``(n, 3)`` array: what :func:`popular_rank` reads off a
    full sort, with a per-row partition instead (O(P) for P entries). Only
    for entries grouped by row (as :func:`incidence` makes them) and rows of similar
    length; else ``None``."""
    if len(rows) > 1 and bool((rows[1:] < rows[:-1]).any()):
        return None
    lens = np.bincount(rows, minlength=n)
    width = max(3, int(lens.max(initial=0)))
    if n * width > 2 * len(rows) + 1024:
        return None
    pad = np.full((n, width), nb, dtype=np.int32 if nb < 2**31 - 1 else np.int64)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    shift = np.arange(0, n * width, width, dtype=np.int64) - starts
    pad.reshape(-1)[np.arange(len(rows), dtype=np.int64) + np.repeat(shift, lens)] = vals
    return np.sort(np.partition(pad, 2, axis=1)[:, :3], axis=1)


#: Largest batch whose window pairs are valued exactly (:func:`shared_weight`).
#: Exact values rank partners better (forest savings +2-3% from 5k requests)
#: but cost O(pairs * long blocks / 8), which grows faster than the batch:
#: at 100k-request chunks they tripled the candidate search's CPU and doubled
#: peak memory at 1M. Above it pairs are ranked by the estimate (the blocks
#: the sort windows found) and the planner makes kept ones exact.
EXACT_VALUES_MAX = 20_000
#: Most block tests (pairs x blocks of the member holding fewer long-list
#: blocks) spent valuing pairs exactly, ~1 s; past it the estimate is kept
#: whatever the batch size. 20k synthetic requests need 16M; 5000 requests
#: of 200 blocks from a 50k vocabulary (every list long, 4M pairs) 550M.
EXACT_WORK_MAX = 32_000_000


def _top_k_per_row(m: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``k`` largest entries as edges ``(lo, hi, value)``, each
    pair once (kept if either end keeps it). One sort on a combined key."""
    counts = np.diff(m.indptr)
    r = np.repeat(np.arange(m.shape[0], dtype=np.int64), counts)
    top = float(m.data.max()) + 1.0
    order = np.argsort(r * top + (top - m.data), kind="stable")
    rank = np.arange(len(order)) - np.repeat(m.indptr[:-1], counts)
    sel = order[rank < k]
    a, b, v = r[sel], m.indices[sel].astype(np.int64), m.data[sel]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    _, first = np.unique(lo * m.shape[0] + hi, return_index=True)
    return lo[first], hi[first], v[first]


def candidate_edges(
    sets: Sequence[frozenset[int]],
    weights: np.ndarray,
    k: int,
    budget: int = PAIR_BUDGET,
    with_exactness: bool = False,
    backend: str = "scipy",
    penalty: np.ndarray | None = None,
    exact_max: int = EXACT_VALUES_MAX,
) -> Any:
    """Up to ``k`` likely best partners per request, with overlap estimates.

    Blocks whose posting lists (requests holding them) are short enough to
    fit ``budget`` pairs in total pair everyone, through one sparse product
    (exact overlaps on small batches). Blocks with longer lists pair each
    request only with its ``WINDOW`` followers in two similarity sorts (by
    min-hash and by most popular blocks). Either way each pair found is
    valued with every block the two requests share, long-list blocks
    included, on batches of at most ``exact_max`` requests when that takes
    at most ``EXACT_WORK_MAX`` block tests (otherwise window pairs are valued
    by the blocks the windows found and short-list pairs by their short-list
    blocks: an estimate); which pairs are found is approximate when some
    list is too long (then the exactness flag is ``False``: a better partner
    may have been missed).

    ``backend``: ``"scipy"`` or ``"torch"`` for the sparse product (see
    :mod:`contextpilot.core.overlap`). ``penalty`` (per request, >= 0):
    partners are ranked, and values returned, as
    ``overlap - penalty[a] - penalty[b]`` (pairs with no overlap stay out).

    Returns ``(a, b, value)`` with ``a < b``, each pair once, plus (with
    ``with_exactness``) whether every posting list was paired exhaustively
    (when it is ``False``, :func:`~contextpilot.core.cluster.build_forest`
    recomputes the values of the edges it keeps from the sets).
    """
    n = len(sets)
    empty = np.zeros(0, dtype=np.int64)
    none = (empty, empty, np.zeros(0)) + ((True,) if with_exactness else ())
    if n < 2:
        return none
    rows, cols = incidence(sets, compact=True)
    if not len(cols):
        return none
    n_blocks = int(cols.max()) + 1
    freq = np.bincount(cols, minlength=n_blocks)
    limit = _full_pair_limit(freq[freq > 0], budget)
    short = freq[cols] <= limit
    overlap = overlap_matrix(rows[short], cols[short], weights, n, n_blocks, backend)
    if limit < freq.max():
        long_ = ~short & _rarest(rows, cols, freq, RAREST)
        lr, lc = rows[long_], cols[long_]
        pa, pb, pw = [], [], []
        for key in (_min_hash_key(rows, cols, n, n_blocks, 0), popular_rank(rows, cols, n, freq)):
            a_, b_, c_ = _posting_pairs(lr, lc, key, 0)
            pa.append(a_)
            pb.append(b_)
            pw.append(weights[c_])
        wa, wb = np.concatenate(pa), np.concatenate(pb)
        if n <= exact_max and exact_work(overlap, rows[~short], n, wa, wb) <= EXACT_WORK_MAX:
            # the windows only find pairs; every pair found is valued with all
            # the blocks it shares, the long-list ones included
            overlap = with_long_blocks(overlap, rows[~short], cols[~short], weights, n, wa, wb)
        else:
            # estimates that only rank candidates (a block both sorts found
            # counts twice); the planner makes kept ones exact. Built as one
            # triangle then mirrored: half the entries at the candidate
            # search's memory peak (integer-valued sums: exact in any order)
            lo = np.concatenate([np.minimum(a_, b_) for a_, b_ in zip(pa, pb)])
            hi = np.concatenate([np.maximum(a_, b_) for a_, b_ in zip(pa, pb)])
            del pa, pb
            est = sp.csr_matrix((np.concatenate(pw), (lo, hi)), shape=(n, n))
            del lo, hi, pw
            overlap = overlap + (est + est.T.tocsr())
    overlap.setdiag(0)
    overlap.eliminate_zeros()
    overlap.sort_indices()  # ties in the top-k go to the lower id, whatever the backend
    if not overlap.nnz:
        return none
    shift = 0.0
    if penalty is not None and len(penalty):
        # rank by overlap - penalties, kept positive for the top-k sort
        shift = 2.0 * float(penalty.max()) + 1.0
        counts = np.diff(overlap.indptr)
        r = np.repeat(np.arange(n, dtype=np.int64), counts)
        overlap.data = overlap.data - penalty[r] - penalty[overlap.indices] + shift
    edges = _top_k_per_row(overlap, k)
    if shift:
        edges = (edges[0], edges[1], edges[2] - shift)
    return edges + ((bool(limit >= freq.max()),) if with_exactness else ())
