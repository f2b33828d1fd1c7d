"""One batch clustered once; its shares laid out against different live indexes.

What a routed ``/reorder`` needs (see :mod:`contextpilot.core.fanout`):
:func:`cluster_once` interns the batch and groups it into one
prefix-sharing forest, the one :func:`~contextpilot.core.planner.plan`
builds (same interning, chunking and :func:`~contextpilot.core.cluster.build_forest`),
whose trees are the groups the router places on replicas; each tree of
``refine_min`` requests or more (by default ``REFINE_MIN``, 50; 0: no
tree) is then clustered again on its own
(:func:`refined`: same leaves, so the groups do not change). Then
:meth:`Clustered.lay_out` lays each replica's share out along its part of
that forest with the emitter the stateful planner uses
(:class:`~contextpilot.core.order.Emitter`), against that replica's own
live index and recent requests: each share still puts what its replica
holds first (the heaviest cached path, label by label), and no share is
planned again.

A share that splits a group (a caller's own placement) is laid out along
the forest restricted to its members: a merge left with one member child
is replaced by that child, and intersections are recomputed where a
subtree lost leaves (``inter[parent] <= inter[child]`` still holds).

Why refine at all (measured with ``python -m contextpilot.bench.routing_batch``,
synthetic RAG, seeds 0-2, capacity 2000 id blocks per replica): the greedy
builds a large tree better alone than inside the whole batch, because
inside it each request's few candidate partners compete with the whole
batch (on 5000 requests the trees of 200+ requests save 3% more alone,
those of 10-50 0.5%, those under 10 0.1%). Refining only the trees of 50+
requests keeps ~80% of that gain for ~25% of the cost of refining all
trees of three or more; per 5000-request batch on 2 or 4 replicas: routed
hit ratio 0.651 (no refinement) / 0.658 (50+) / 0.660 (3+), planning median
1.1 / 1.2 / 1.9 s.

Invariants: ``groups`` partition the input indices (the batch forest's
trees, in forest order); the leaves of group ``t`` hang from
``tree_roots[t]`` in the (refined) ``forest``.

Cost: :func:`cluster_once` the planner's clustering (near-linear in the
blocks) plus that of the trees refined (at most as much again); a batch over ``chunk_size`` requests is
clustered chunk by chunk in this process (no worker processes: a routed
batch is at most the server's ``--max-contexts``).
:meth:`Clustered.lay_out`: O(share) to find whole groups (O(merges) when
one is split), O(forest nodes) for the emitter's bookkeeping, plus the
emission of the share's blocks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from contextpilot.core.batch import FLAT_MIN_BLOCKS, Batch, chunk_indices, intern_batch
from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.cluster import Forest, build_forest
from contextpilot.core.gcpause import gc_paused
from contextpilot.core.index import PrefixIndex
from contextpilot.core.order import Emitter, PlanItems
from contextpilot.core.planner import PlanOptions
from contextpilot.core.recent import RecentRequests

__all__ = ["REFINE_MIN", "Clustered", "Share", "cluster_once"]


@dataclass
class Share:
    """One share laid out: run ``contexts[j]`` (the blocks of input
    ``order[j]``) j-th; ``keys``/``tokens`` aligned with ``contexts``."""

    order: list[int]
    contexts: list[list[Block]]
    keys: list[list[int]]
    tokens: list[list[int]]
    groups: list[list[int]]
    total_tokens: int
    seconds: float
    #: ``initial`` / ``incremental`` (a live index followed) or ``stateless``
    mode: str = "stateless"


@dataclass
class Clustered:
    """A batch and its one forest (leaves are input indices)."""

    batch: Batch
    #: each request's planning ids, in the caller's order
    rows: list[list[int]]
    forest: Forest
    groups: list[list[int]]
    #: group of each input index
    tree_of: list[int]
    #: the roots each group's leaves hang from (one, unless its refinement left several)
    tree_roots: list[list[int]]
    #: the clustering's options
    options: PlanOptions = field(default_factory=PlanOptions)
    #: CPU seconds per phase (``interning``, ``candidates``, ``merging``) and ``wall``
    timings: dict[str, float] = field(default_factory=dict)

    def blocks_of(self, members: Sequence[int]) -> tuple[list[int], list[int]]:
        """Stable keys and token lengths of every block of these requests,
        concatenated (already computed: no block is hashed again). O(blocks)."""
        keys, tokens, rows = self.batch.keys, self.batch.tokens, self.rows
        pids = [p for i in members for p in rows[i]]
        return [keys[p] for p in pids], [tokens[p] for p in pids]

    def lay_out(
        self,
        members: Sequence[int],
        index: PrefixIndex | None = None,
        recent: RecentRequests | None = None,
    ) -> Share:
        """Lay out the requests ``members`` (input indices, distinct) along
        their part of the forest, following ``index`` and ``recent`` (read
        only; ``None``: the caller's order within labels)."""
        t0 = time.perf_counter()
        forest = self._part(members)
        groups = [tree_leaves(forest, r) for r in forest.roots]
        b = self.batch
        with gc_paused():
            order, seqs = Emitter(PlanItems(b.keys, b.tokens, []), index, recent).emit(forest, self.rows)
            values, keys, tokens = b.values, b.keys, b.tokens
            contexts = [[values[p] for p in q] for q in seqs]
            key_rows = [[keys[p] for p in q] for q in seqs]
            token_rows = [[tokens[p] for p in q] for q in seqs]
        return Share(
            order=order,
            contexts=contexts,
            keys=key_rows,
            tokens=token_rows,
            groups=groups,
            total_tokens=sum(map(sum, token_rows)),
            seconds=time.perf_counter() - t0,
        )

    def _part(self, members: Sequence[int]) -> Forest:
        """The forest of ``members``: whole trees as they are, else the
        restriction (see the module docstring)."""
        f = self.forest
        trees = sorted({self.tree_of[i] for i in members})
        if sum(len(self.groups[t]) for t in trees) == len(members):  # whole trees
            return Forest(
                f.n_leaves, f.left, f.right, f.inter, [r for t in trees for r in self.tree_roots[t]]
            )
        n = f.n_leaves
        keep = [False] * n
        for i in members:
            keep[i] = True
        image = [i if k else -1 for i, k in enumerate(keep)]  # node -> node of the restriction
        whole = list(keep)  # subtree kept entirely: its intersection stands
        left: list[int] = []
        right: list[int] = []
        inter = list(f.inter[:n])
        for j, (a, b) in enumerate(zip(f.left, f.right)):
            ia, ib = image[a], image[b]
            whole.append(whole[a] and whole[b])
            if ia < 0 or ib < 0:
                image.append(ib if ia < 0 else ia)
                continue
            image.append(n + len(left))
            left.append(ia)
            right.append(ib)
            inter.append(f.inter[n + j] if whole[-1] else inter[ia] & inter[ib])
        return Forest(n, left, right, inter, [image[r] for r in f.roots if image[r] >= 0])


def tree_leaves(forest: Forest, root: int) -> list[int]:
    """Leaves of one tree, depth-first, left child first: the order the
    emitter runs them in. O(tree)."""
    out: list[int] = []
    stack = [root]
    while stack:
        v = stack.pop()
        ch = forest.children(v)
        if ch is None:
            out.append(v)
        else:
            stack.append(ch[1])
            stack.append(ch[0])
    return out


def cluster_once(
    contexts: Sequence[Sequence[Block]],
    table: BlockTable,
    options: PlanOptions | None = None,
    refine_min: int | None = None,
) -> Clustered:
    """Intern already-validated ``contexts`` (with ``table``'s token
    counter) and build their one forest: ``options.k``, ``chunk_size`` and
    ``backend`` as :func:`~contextpilot.core.planner.plan` uses them; then
    cluster each tree of ``refine_min`` requests or more again alone
    (``None``: ``REFINE_MIN``; 0: no refinement; see the module docstring).
    ``timings["refining"]``: CPU seconds of that; ``timings["refined"]``:
    trees refined."""
    if refine_min is None:
        refine_min = REFINE_MIN
    if refine_min < 0:
        raise ValueError(f"refine_min must be >= 0, got {refine_min}")
    opts = options or PlanOptions()
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    timings: dict[str, float] = {}
    with gc_paused():  # many small containers, no cycles
        flat = len(contexts) > opts.chunk_size or sum(map(len, contexts)) >= FLAT_MIN_BLOCKS
        batch = intern_batch(contexts, table, True, flat)
        rows = batch.lists()
        timings["interning"] = time.thread_time() - cpu0
        n = len(rows)
        inter: list[frozenset[int]] = [frozenset(r) for r in rows]
        left: list[int] = []
        right: list[int] = []
        roots: list[int] = []
        chunks = chunk_indices(batch, opts.chunk_size)
        for chunk in chunks:
            idx = chunk.tolist()
            sets = inter[:n] if len(chunks) == 1 else [inter[i] for i in idx]
            f = build_forest(
                sets,
                batch.tokens,
                k=opts.k,
                backend=opts.backend,
                timings=timings,
                kernel_min=opts.kernel_min,
            )
            m, off = f.n_leaves, len(inter) - f.n_leaves  # local merge v -> v + off

            def glob(v: int, idx: list[int] = idx, m: int = m, off: int = off) -> int:
                return idx[v] if v < m else v + off

            left += [glob(v) for v in f.left]
            right += [glob(v) for v in f.right]
            inter += f.inter[m:]
            roots += [glob(v) for v in f.roots]
        forest = Forest(n, left, right, inter, roots)
        groups = [tree_leaves(forest, r) for r in roots]
        tree_of = [0] * n
        for t, g in enumerate(groups):
            for i in g:
                tree_of[i] = t
        r0 = time.thread_time()
        forest, tree_roots, done = refined(forest, groups, batch.tokens, opts, refine_min)
        timings["refining"] = time.thread_time() - r0
        timings["refined"] = float(done)
    timings["wall"] = time.perf_counter() - wall0
    return Clustered(batch, rows, forest, groups, tree_of, tree_roots, options=opts, timings=timings)


#: trees with fewer requests keep their subtree of the batch's forest
#: (the default of :func:`cluster_once`; see the module docstring)
REFINE_MIN = 50


def _copy_tree(
    forest: Forest, root: int, left: list[int], right: list[int], inter: list[frozenset[int]]
) -> int:
    """Append ``forest``'s tree under ``root`` (leaves keep their ids) to
    ``left``/``right``/``inter``; returns the root's new id. O(tree)."""
    n = forest.n_leaves
    new: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        v, ready = stack.pop()
        if v < n:
            continue
        a, b = forest.left[v - n], forest.right[v - n]
        if not ready:
            stack += [(v, True), (b, False), (a, False)]
            continue
        left.append(new.get(a, a))
        right.append(new.get(b, b))
        inter.append(forest.inter[v])
        new[v] = len(inter) - 1
    return new.get(root, root)


def refined(
    forest: Forest, groups: list[list[int]], tokens: list[int], opts: PlanOptions, refine_min: int
) -> tuple[Forest, list[list[int]], int]:
    """``forest`` with each tree of ``max(refine_min, 3)`` leaves or more
    (none when ``refine_min`` is 0) clustered again on its own (same leaves,
    same groups; other trees copied as they are), the roots of each group,
    and how many trees were refined. ``groups[t]``: the leaves of
    ``forest.roots[t]``. O(one more clustering of the refined trees)."""
    least = max(refine_min, 3) if refine_min else forest.n_leaves + 1
    n = forest.n_leaves
    left: list[int] = []
    right: list[int] = []
    inter = list(forest.inter[:n])
    roots: list[list[int]] = []
    done = 0
    for g, root in zip(groups, forest.roots):
        if len(g) < least:
            roots.append([_copy_tree(forest, root, left, right, inter)])
            continue
        # the tree's own planning ids, numbered from 0: the cost stays O(tree)
        pids = sorted(frozenset().union(*(inter[i] for i in g)))
        local = {p: j for j, p in enumerate(pids)}
        f = build_forest(
            [frozenset(map(local.__getitem__, inter[i])) for i in g],
            [tokens[p] for p in pids],
            k=opts.k,
            backend=opts.backend,
            kernel_min=opts.kernel_min,
        )
        m, off = f.n_leaves, len(inter) - f.n_leaves

        def glob(v: int, g: list[int] = g, m: int = m, off: int = off) -> int:
            return g[v] if v < m else v + off

        left += [glob(v) for v in f.left]
        right += [glob(v) for v in f.right]
        inter += [frozenset(map(pids.__getitem__, x)) for x in f.inter[m:]]
        roots.append([glob(v) for v in f.roots])
        done += 1
    return Forest(n, left, right, inter, [r for rs in roots for r in rs]), roots, done
