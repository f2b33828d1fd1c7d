"""The compiled greedy merge of :mod:`contextpilot.core.cluster`: when to use
it, and its arrays.

:mod:`contextpilot.core.merge_jit` holds the numba kernel; this module
imports it only when a batch is big enough to need it (so small batches and
``import contextpilot`` never load numba), turns the planner's live
clusters and candidate pairs into its arrays, and hands back the merges in
the order the kernel made them. Without numba (a platform with no wheels),
:func:`available` is false after one logged warning and the planner keeps
its Python loop: the same plan, about 8x slower in this phase.

Invariant: :func:`greedy_merges` returns exactly the merges, in order, that
``cluster``'s Python loop makes on the same input (same node numbering: the
j-th merge is node ``len(inter) + j``). Cost: O(total set size) to build the
arrays, then the kernel's O(merges * max_degree * set size).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

__all__ = ["available", "greedy_merges", "post_order", "rebracket", "warm_up"]

_log = logging.getLogger(__name__)
#: the compiled functions by name; ``"kernel"`` is written last (under
#: ``_lock``), so a thread that sees it sees the others too, and ``None``
#: there means disabled for good
_state: dict[str, Any] = {}
#: serialises the first import and disabling (planner threads and a
#: server's request threads reach this module concurrently)
_lock = threading.Lock()


def available() -> bool:
    """Whether the compiled kernel can run here (numba imports). The first
    call imports it (about 0.5 s); a failure is logged once as a warning.
    Thread-safe: concurrent first calls import once, and none returns
    before every compiled function is published."""
    if "kernel" not in _state:
        with _lock:
            if "kernel" not in _state:
                try:
                    from contextpilot.core import forest_jit, merge_jit

                    kernel = merge_jit.merge_pass
                    steps = {"rebracket": forest_jit.rebracket, "post_order": forest_jit.post_order}
                except Exception as e:  # noqa: BLE001 (numba missing or broken: plan without it)
                    _disable_locked(f"numba is not importable ({e!r})")
                else:
                    _state.update(steps)
                    _state["kernel"] = kernel  # last: readers test only this key
    return _state["kernel"] is not None


def _disable(why: str) -> None:
    with _lock:
        _disable_locked(why)


def _disable_locked(why: str) -> None:
    # several threads can fail at once: the first one warns
    if _state.get("kernel", False) is not None:
        _log.warning("%s: huge batches merge on the Python loop, slower", why)
    _state["kernel"] = None


def greedy_merges(
    reps: Sequence[int],
    inter: Sequence[frozenset[int]],
    gain: Sequence[int],
    loss: Sequence[int],
    lv: dict[int, int],
    ea: np.ndarray,
    eb: np.ndarray,
    ev: np.ndarray,
    exact: bool,
    max_degree: int,
) -> tuple[list[int], list[int]] | None:
    """The greedy merges over one candidate graph, as ``(left, right)``;
    ``None`` if the kernel is unavailable or fails to compile here (an
    older numba, say: one warning, then the caller's Python loop).

    ``reps``: live cluster ids (into ``inter``); ``ea, eb, ev``: candidate
    pairs as positions in ``reps`` with priorities (exact when ``exact``);
    ``gain``/``loss``: per-block priority weights; ``lv``: each live
    cluster's loss sum."""
    if not available():
        return None
    n_nodes = len(inter)
    total = n_nodes + len(reps)
    rep_ids = np.asarray(reps, dtype=np.int64)
    lens = np.zeros(total, dtype=np.int64)
    lens[rep_ids] = [len(inter[r]) for r in reps]
    starts = np.zeros(total, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    used = int(lens.sum())
    # runs laid out in ascending node id, where ``starts`` points (other
    # nodes have length 0); merged runs never outgrow their parts, so the
    # live total again is room enough for every merge's run
    sd = np.empty(2 * used + 1, dtype=np.int64)
    runs = chain.from_iterable(sorted(inter[r]) for r in sorted(reps))
    sd[:used] = np.fromiter(runs, dtype=np.int64, count=used)
    lv_arr = np.zeros(total, dtype=np.int64)
    lv_arr[rep_ids] = [lv[r] for r in reps]
    args = (
        n_nodes,
        sd,
        starts,
        lens,
        used,
        rep_ids,
        np.asarray(ea, dtype=np.int64),
        np.asarray(eb, dtype=np.int64),
        np.asarray(ev).astype(np.int64),
        bool(exact),
        np.asarray(gain, dtype=np.int64),
        np.asarray(loss, dtype=np.int64),
        lv_arr,
        int(max_degree),
    )
    got = _call("kernel", args)
    return None if got is None else (got[0].tolist(), got[1].tolist())


def _call(name: str, args: tuple[Any, ...]) -> Any:
    """A compiled function's result; ``None`` (one warning, then never
    again) if it does not compile with this numba. Inputs a failed
    compilation saw are untouched: it fails before running."""
    fn = _state.get(name) if _state.get("kernel") is not None else None
    if fn is None:  # disabled meanwhile by another thread
        return None
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 (a numba typing or lowering error)
        if type(e).__module__.split(".")[0] != "numba":
            raise
        _disable(f"the compiled planner steps do not compile with this numba ({type(e).__name__}: {e})")
        return None


def _runs(inter: Sequence[frozenset[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every set as a run of one flat array, in iteration order: ``(sd,
    starts, lengths)``. O(total size)."""
    lens = np.fromiter(map(len, inter), dtype=np.int64, count=len(inter))
    starts = np.zeros(len(inter), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    sd = np.fromiter(chain.from_iterable(inter), dtype=np.int64, count=int(lens.sum()))
    return sd, starts, lens


def rebracket(
    n: int, left: list[int], right: list[int], inter: list[frozenset[int]], w: Sequence[int], rounds: int
) -> int | None:
    """``rotations.rebracket`` compiled: the same rotations in the same
    order, applied in place to ``left``, ``right`` and ``inter`` (each
    rotated node's set is rebuilt here as ``inter[x] & inter[kept]``, as the
    Python sweep builds it). Returns the tokens gained, or ``None`` (nothing
    changed) where the kernel is unavailable."""
    if not available():
        return None
    sd, st, sl = _runs(inter)
    la, ra = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    ww = np.asarray(w, dtype=np.int64) if len(w) else np.zeros(1, dtype=np.int64)
    got = _call("rebracket", (n, la, ra, sd, len(sd), st, sl, ww, int(rounds)))
    if got is None:
        return None
    log, count, gained = got
    left[:] = la.tolist()
    right[:] = ra.tolist()
    for y, x, kept in log[:count].tolist():
        inter[y] = inter[x] & inter[kept]
    return int(gained)


def post_order(
    n: int, left: list[int], right: list[int], roots: list[int]
) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """``rotations.renumbered``'s numbering compiled: ``(new_left, new_right,
    old, new_roots)`` (``old[k]``: the old id of merge ``n + k``), or
    ``None`` where the kernel is unavailable."""
    if not available():
        return None
    la, ra = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    got = _call("post_order", (n, la, ra, np.asarray(roots, dtype=np.int64)))
    return None if got is None else tuple(a.tolist() for a in got)


def warm_up() -> bool:
    """Import numba and load (or, the first time on a machine, compile) the
    compiled steps now, on a tiny forest: what a planning worker does while
    its parent interns the batch. Returns :func:`available`."""
    sets = [frozenset({0, 1}), frozenset({0, 1, 2}), frozenset({1, 2})]
    pairs = np.array([0, 1]), np.array([1, 2]), np.array([2, 2])
    done = greedy_merges([0, 1, 2], sets, [1, 1, 1], [0, 0, 0], dict.fromkeys(range(3), 0), *pairs, True, 12)
    if done is None:
        return False
    inter = [*sets[:2], sets[0] & sets[1]]
    return (
        rebracket(2, [0], [1], inter, [1, 1, 1], 1) is not None and post_order(2, [0], [1], [2]) is not None
    )
