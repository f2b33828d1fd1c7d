"""Block order within requests, shared by batch and online planning.

A plan is a forest (see :mod:`contextpilot.core.cluster`); a single online
request is a forest of one leaf. Walking it depth-first, each node
contributes its *label*: the blocks all its requests hold that its parent
did not place yet. Within a label the order is free, and is chosen as:

1. blocks the engine already holds, along the heaviest cached path that
   continues the prefix placed so far (the live index), in cached order;
2. then blocks that similar past requests also held (likely wanted next),
   most shared first;
3. then the caller's original order (relevance), which also makes the
   result deterministic.

A node's children continue the cached path only if the node's whole label
was found in the cache; once the prompt leaves the cache, nothing after it
can hit.

Planning ids (``pid``) name one occurrence of a block in a request; a
block repeated in a request has one pid per copy, all with the same key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from contextpilot.core.cluster import Forest
from contextpilot.core.index import IndexNode, PrefixIndex
from contextpilot.core.recent import RecentRequests

__all__ = ["Emitter", "PlanItems"]


@dataclass
class PlanItems:
    """The per-call universe of planning ids."""

    #: stable block key of each pid (empty when no live state is followed)
    keys: list[int]
    #: token length of each pid
    tokens: list[int]
    #: per request, its pids in the caller's order
    requests: list[list[int]]


class Emitter:
    """Turns a forest into per-request pid sequences, in schedule order."""

    def __init__(
        self,
        items: PlanItems,
        index: PrefixIndex | None = None,
        recent: RecentRequests | None = None,
    ) -> None:
        self.items = items
        self.index = index if index is not None and index.nodes else None
        self.recent = recent if recent is not None and len(recent) else None

    def order_label(
        self, label: set[int], cursor: IndexNode | None, hint: Sequence[int]
    ) -> tuple[list[int], IndexNode | None]:
        """Order one label's pids; returns them and the cache cursor for
        what follows (``None`` once the prefix has left the cache).
        ``hint``: the pids of a request holding the label, in the caller's
        order: its neighbours and its order rank the uncached blocks."""
        keys = self.items.keys
        out: list[int] = []
        rest = set(label)
        if cursor is not None and self.index is not None:
            avail = Counter(keys[p] for p in rest)
            path, end = self.index.heaviest_path(avail, cursor)
            by_key: dict[int, list[int]] = {}
            for p in sorted(rest, reverse=True):
                by_key.setdefault(keys[p], []).append(p)
            for k in path:
                p = by_key[k].pop()
                out.append(p)
                rest.discard(p)
            cursor = end if not rest else None
        else:
            cursor = None
        if rest:
            # caller's order first, then (stable sort) what neighbours held
            ranked = [p for p in hint if p in rest]
            if self.recent is not None and len(ranked) > 1:
                tokens = self.items.tokens
                score = self.recent.scores({keys[p]: float(tokens[p]) for p in hint})
                ranked.sort(key=lambda p: -score.get(keys[p], 0.0))
            out.extend(ranked)
        return out, cursor

    def emit(self, forest: Forest, reqs: Sequence[list[int]]) -> tuple[list[int], list[list[int]]]:
        """Schedule (indices into ``reqs``, the forest's leaves' pids) and
        each scheduled request's pids."""
        n = forest.n_leaves
        inter = forest.inter
        order: list[int] = []
        seqs: list[list[int]] = []
        root_cursor = self.index.root if self.index is not None else None
        # leftmost leaf of every node; children are created before parents
        leftmost = list(range(n)) + [0] * (len(inter) - n)
        for j, a in enumerate(forest.left):
            leftmost[n + j] = leftmost[a]
        # explicit stack: (node, prefix pids, placed set, cache cursor)
        for root in forest.roots:
            stack: list[tuple[int, list[int], frozenset[int], IndexNode | None]] = [
                (root, [], frozenset(), root_cursor)
            ]
            while stack:
                v, prefix, placed, cursor = stack.pop()
                if v < n:
                    label = set(reqs[v]) - placed
                    seq, _ = self.order_label(label, cursor, reqs[v])
                    order.append(v)
                    seqs.append(prefix + seq)
                    continue
                label = set(inter[v]) - placed
                seq, cur = self.order_label(label, cursor, reqs[leftmost[v]])
                pre = prefix + seq
                done = placed | label
                ch = forest.children(v)
                assert ch is not None
                stack.append((ch[1], pre, done, cur))
                stack.append((ch[0], pre, done, cur))
        return order, seqs

    def emit_plain(self, forest: Forest, reqs: Sequence[list[int]]) -> tuple[list[int], list[int], list[int]]:
        """:meth:`emit` without live state (no index, no recent requests),
        flat: ``(order, pids, lens)``, the scheduled requests' pids
        concatenated and cut by ``lens``. Same schedule and sequences as
        :meth:`emit`, without its per-node sets.

        Invariant used: a node's set is the intersection of its children's,
        so along a root-to-leaf path the sets only grow and what the
        ancestors placed is exactly the parent's set; a node's label is
        its set minus its parent's, in its leftmost leaf's order (a leaf's:
        its own pids minus its parent's set). O(total pids + nodes' labels)."""
        assert self.index is None and self.recent is None, "emit_plain has no live state to follow"
        n = forest.n_leaves
        inter, left, right = forest.inter, forest.left, forest.right
        leftmost = list(range(n)) + [0] * (len(inter) - n)
        for j, a in enumerate(left):
            leftmost[n + j] = leftmost[a]
        order: list[int] = []
        flat: list[int] = []
        lens: list[int] = []
        none: frozenset[int] = frozenset()
        for root in forest.roots:
            # (node, pids placed above it, its parent's set)
            stack: list[tuple[int, list[int], frozenset[int]]] = [(root, [], none)]
            while stack:
                v, prefix, above = stack.pop()
                if v < n:
                    start = len(flat)
                    flat += prefix
                    flat += [p for p in reqs[v] if p not in above] if above else reqs[v]
                    order.append(v)
                    lens.append(len(flat) - start)
                    continue
                iv = inter[v]
                label = [p for p in reqs[leftmost[v]] if p in iv and p not in above]
                pre = prefix + label if label else prefix  # children only read it
                j = v - n
                stack.append((right[j], pre, iv))
                stack.append((left[j], pre, iv))
        return order, flat, lens
