"""The live prefix index: a block-level radix tree of what the engine holds.

Each node is one block (keyed by its stable 64-bit content key) with its
token length. A request that was sent is a path from the root; its id sits
on the deepest node of its path that is still cached (its *end*).

Invariants (checked by :meth:`PrefixIndex.check`):

* ``refs(v) = len(ends(v)) + sum(refs(c) for c in children(v))`` and every
  node other than the root has ``refs >= 1``: a node lives exactly as long
  as some live request's path runs through it;
* ``tokens == sum(v.tokens)`` over all nodes but the root;
* each live request id maps to exactly one end node, and is in its ``ends``;
* a node's ``tick`` (last use) is never older than any descendant's, so
  evicting least recently used *leaves* evicts bottom-up, as SGLang does.

Eviction paths, all keeping the invariants:

* :meth:`evict` (engine hooks): drop requests; their nodes go when no other
  live request runs through them;
* capacity in tokens, a node cap and TTL: least recently used leaves go
  first; requests that ended there move up to the parent, and a request
  with nothing left is dropped;
* a request cap: the least recently used requests are dropped.

All public methods take the instance lock. Costs: insert and match are
O(len(path)); each eviction is O(log n) amortised.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contextpilot.core.batch_trie import BatchTrie, batch_trie
from contextpilot.core.gcpause import gc_paused
from contextpilot.core.persist import SnapshotError, as_dict, as_int, as_list, as_seconds

__all__ = ["EvictionReport", "IndexNode", "IndexStats", "PrefixIndex"]

_EVICTION_REASONS = ("engine", "capacity", "ttl")


class IndexNode:
    """One cached block of the tree. Outside this module it is an opaque,
    read-only cursor (e.g. where :meth:`PrefixIndex.heaviest_path` stopped);
    only the index changes it."""

    __slots__ = ("key", "tokens", "parent", "children", "refs", "ends", "tick", "stamp", "alive")

    def __init__(
        self,
        key: int,
        tokens: int,
        parent: IndexNode | None,
        refs: int = 0,
        tick: int = 0,
        stamp: float = 0.0,
    ) -> None:
        self.key = key
        self.tokens = tokens
        self.parent = parent
        self.children: dict[int, IndexNode] = {}
        self.refs = refs
        self.ends: set[str] | None = None
        self.tick = tick
        self.stamp = stamp
        self.alive = True


def _mask(n: int, where: Iterable[int]) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(where)] = True
    return out


def _row_sums(x: np.ndarray, lens: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """Sum of ``x`` over each row (``x`` flat, cut by ``lens``), as int64."""
    out = np.zeros(len(lens), dtype=np.int64)
    full = lens > 0
    if len(x):
        out[full] = np.add.reduceat(x, offs[:-1][full], dtype=np.int64)
    return out


def _tokens(node: IndexNode) -> int:
    return node.tokens


@dataclass
class EvictionReport:
    """What :meth:`PrefixIndex.evict` did."""

    removed: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    nodes_removed: int = 0
    tokens_removed: int = 0


@dataclass
class IndexStats:
    requests: int
    nodes: int
    tokens: int
    capacity_tokens: float | None
    inserted: int
    hit_tokens: int
    sent_tokens: int
    evicted_requests: int
    evicted_by_engine: int
    evicted_by_capacity: int
    evicted_by_ttl: int

    @property
    def hit_ratio(self) -> float:
        return self.hit_tokens / self.sent_tokens if self.sent_tokens else 0.0


@dataclass
class _Tree:
    """The whole mutable state of a :class:`PrefixIndex`, for an atomic swap."""

    root: IndexNode
    requests: OrderedDict[str, IndexNode]
    heap: list[tuple[int, int, IndexNode]]
    tick: int
    tokens: int
    nodes: int
    inserted: int
    hit_tokens: int
    sent_tokens: int
    evicted: Counter[str]


class PrefixIndex:
    """What the engine holds, as a radix tree over block keys.

    ``capacity_tokens``: the engine's cache size in tokens (``None``: trust
    the hooks only). ``ttl``: seconds after last use when content is
    presumed gone. ``max_nodes`` / ``max_requests`` bound memory whatever
    the traffic.
    """

    def __init__(
        self,
        capacity_tokens: float | None = None,
        ttl: float | None = None,
        max_nodes: int = 2_000_000,
        max_requests: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity_tokens is not None and not capacity_tokens >= 0:
            raise ValueError(f"capacity_tokens must be >= 0 or None, got {capacity_tokens!r}")
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds or None, got {ttl!r}")
        if max_nodes < 1 or max_requests < 1:
            raise ValueError("max_nodes and max_requests must be >= 1")
        self.capacity_tokens = capacity_tokens
        self.ttl = ttl
        self.max_nodes = max_nodes
        self.max_requests = max_requests
        self._clock = clock
        self._lock = threading.RLock()
        self._reset_state()

    # -- state -------------------------------------------------------------

    def _reset_state(self) -> None:
        self.root = IndexNode(0, 0, None)
        self._requests: OrderedDict[str, IndexNode] = OrderedDict()
        self._heap: list[tuple[int, int, IndexNode]] = []
        self._seq = 0
        self._tick = 0
        self.tokens = 0
        self.nodes = 0
        self._inserted = 0
        self._hit_tokens = 0
        self._sent_tokens = 0
        self._evicted = Counter[str]()

    def reset(self) -> None:
        with self._lock:
            self._reset_state()

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def __len__(self) -> int:
        return len(self._requests)

    def __contains__(self, rid: object) -> bool:
        return rid in self._requests

    def request_ids(self) -> list[str]:
        with self._lock:
            return list(self._requests)

    # -- queries -------------------------------------------------------------

    def match(self, keys: Sequence[int]) -> int:
        """Tokens of the longest cached prefix of ``keys`` (no side effects)."""
        with self._lock:
            node, hit = self.root, 0
            for k in keys:
                node = node.children.get(k)  # type: ignore[assignment]
                if node is None:
                    break
                hit += node.tokens
            return hit

    def heaviest_path(
        self, available: Counter[int], start: IndexNode | None = None, budget: int = 128
    ) -> tuple[list[int], IndexNode]:
        """Heaviest cached path below ``start`` (default: the root) made only
        of keys in the multiset ``available`` (not modified).

        Depth-first, heavier children first, visiting at most ``budget``
        nodes, so the cost is bounded whatever the index holds (the first
        descent is the greedy path; the rest of the budget tries
        alternatives). Returns the path's keys and the node it reaches.
        """
        with self._lock:
            if start is not None and not start.alive:
                return [], start
            top = start if start is not None else self.root
            rem = dict(available)
            best_w = 0
            best: list[IndexNode] = []
            path: list[IndexNode] = []
            stack: list[tuple[IndexNode, int, int]] = [(top, 0, 0)]
            visits = 0
            while stack and visits < budget:
                v, depth, wsum = stack.pop()
                while len(path) >= depth and path:  # unwind to v's parent
                    rem[path.pop().key] += 1
                if depth:
                    path.append(v)
                    rem[v.key] -= 1
                visits += 1
                if wsum > best_w:
                    best_w, best = wsum, path[:]
                kids = v.children
                if not kids:
                    continue
                if len(kids) <= len(rem):
                    nxt = [c for k, c in kids.items() if rem.get(k)]
                else:
                    nxt = [kids[k] for k, n in rem.items() if n and k in kids]
                if len(nxt) > 1:
                    nxt.sort(key=_tokens)
                d = depth + 1
                for c in nxt:
                    stack.append((c, d, wsum + c.tokens))
            return [v.key for v in best], (best[-1] if best else top)

    def stats(self) -> IndexStats:
        with self._lock:
            return IndexStats(
                requests=len(self._requests),
                nodes=self.nodes,
                tokens=self.tokens,
                capacity_tokens=self.capacity_tokens,
                inserted=self._inserted,
                hit_tokens=self._hit_tokens,
                sent_tokens=self._sent_tokens,
                evicted_requests=sum(self._evicted.values()),
                evicted_by_engine=self._evicted["engine"],
                evicted_by_capacity=self._evicted["capacity"],
                evicted_by_ttl=self._evicted["ttl"],
            )

    # -- updates -------------------------------------------------------------

    def insert(self, keys: Sequence[int], tokens: Sequence[int], rid: str) -> int:
        """Record that request ``rid`` sent blocks ``keys`` (in this order).

        Returns the tokens of its prefix that were already cached (the hit
        the engine should see). Re-inserting a live id replaces its path.
        """
        if len(keys) != len(tokens):
            raise ValueError("keys and tokens differ in length")
        with self._lock:
            if rid in self._requests:
                self._drop_request(rid)
            self._tick += 1
            tick, now = self._tick, self._clock()
            node, hit, matched = self.root, 0, True
            for k, t in zip(keys, tokens):
                child = node.children.get(k) if matched else None
                if child is None:
                    matched = False
                    child = IndexNode(k, int(t), node)
                    node.children[k] = child
                    self.tokens += child.tokens
                    self.nodes += 1
                else:
                    hit += child.tokens
                child.refs += 1
                child.tick, child.stamp = tick, now
                node = child
            self._sent_tokens += sum(int(t) for t in tokens)
            self._hit_tokens += hit
            self._inserted += 1
            if node is not self.root:
                if node.ends is None:
                    node.ends = set()
                node.ends.add(rid)
                self._requests[rid] = node
                self._push(node)
            self._enforce_bounds(now)
            return hit

    def insert_batch(
        self, keys: np.ndarray, tokens: np.ndarray, lens: np.ndarray, rids: Sequence[str]
    ) -> np.ndarray:
        """Record a batch of requests sent in this order: request j sent the
        keys ``keys[offs[j]:offs[j + 1]]`` (uint64, flat, cut by ``lens``)
        with token lengths ``tokens`` (same layout), under the fresh id
        ``rids[j]``. Returns each request's hit (tokens of its prefix the
        index held before it: before the batch, or from an earlier request
        of the batch).

        Same result as :meth:`insert` on each request in turn with the caps
        (tokens, nodes, requests) applied once after the batch rather than
        after every request: what does not fit is evicted in LRU order
        (least recently used leaves first: older content, then the batch's
        earliest requests, deepest blocks first). The two differ only when
        one request's blocks would have been evicted mid-batch and sent
        again by a later one. The batch's trie is built with array
        operations (:mod:`contextpilot.core.batch_trie`), and only nodes
        that survive the caps become tree nodes: O(P log P) numpy work for
        P blocks plus Python work per kept node and per request.
        """
        if len(rids) != len(lens) or int(lens.sum()) != len(keys) or len(tokens) != len(keys):
            raise ValueError("keys, tokens, lens and rids do not line up")
        ukeys, kid = np.unique(np.asarray(keys, dtype=np.uint64), return_inverse=True)
        return self.insert_batch_ids(kid.reshape(-1), ukeys, tokens, lens, rids)

    def insert_batch_ids(
        self, kid: np.ndarray, ukeys: np.ndarray, tokens: np.ndarray, lens: np.ndarray, rids: Sequence[str]
    ) -> np.ndarray:
        """:meth:`insert_batch` with the keys given as ``ukeys[kid]``
        (``ukeys``: distinct uint64 keys; ``kid``: dense ids into it), which
        spares a sort of every block when the caller has them."""
        n = len(lens)
        if len(rids) != n or int(lens.sum()) != len(kid) or len(tokens) != len(kid):
            raise ValueError("keys, tokens, lens and rids do not line up")
        with gc_paused(long_lived=True):  # up to max_nodes new nodes, no cycles
            return self._insert_batch(kid, ukeys, tokens, lens, rids)

    def _insert_batch(
        self, kid: np.ndarray, ukeys: np.ndarray, tokens: np.ndarray, lens: np.ndarray, rids: Sequence[str]
    ) -> np.ndarray:
        n = len(lens)
        with self._lock:
            for rid in rids:
                if rid in self._requests:
                    raise ValueError(f"request id {rid!r} is already live")
            now = self._clock()
            base = self._tick
            self._tick += n
            self._inserted += n
            if not len(kid):
                return np.zeros(n, dtype=np.int64)
            tokens = np.asarray(tokens, dtype=np.int64)
            trie = batch_trie(kid, tokens, lens)
            matched = self._match_trie(trie, ukeys.tolist())
            node = trie.node
            offs = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lens, out=offs[1:])
            # a block hits if the tree held it or an earlier row made it
            cached = trie.first[node] < np.repeat(np.arange(n, dtype=node.dtype), lens)
            cached |= _mask(len(trie), matched)[node]
            hits = _row_sums(np.where(cached, tokens, 0), lens, offs)
            del cached
            self._sent_tokens += int(tokens.sum())
            self._hit_tokens += int(hits.sum())
            keep, cut = self._survivors(trie)
            # each row ends at its deepest kept node (kept nodes are closed
            # under ancestors); rows with nothing kept are evicted already
            kept_per_row = _row_sums(keep[node], lens, offs)
            live_rows = np.flatnonzero(kept_per_row > 0)
            gone = int(np.count_nonzero(lens[kept_per_row == 0]))
            over = len(live_rows) - self.max_requests
            if over > 0:  # the request cap drops the batch's earliest ones
                live_rows = live_rows[over:]
                gone += over
            self._evicted["capacity"] += gone
            ends = node[offs[live_rows] + kept_per_row[live_rows] - 1]
            refs = np.bincount(ends, minlength=len(trie)).astype(np.int64)
            ds = trie.depth_start
            for d in range(len(ds) - 2, 0, -1):  # subtree sums, deepest first
                lo, hi = ds[d], ds[d + 1]
                refs[ds[d - 1] : lo] += np.bincount(
                    trie.parent[lo:hi] - ds[d - 1], weights=refs[lo:hi], minlength=lo - ds[d - 1]
                ).astype(np.int64)
            objs = self._graft(trie, ukeys, keep, refs, matched, base, now)
            reqs, get = self._requests, objs.__getitem__
            for rid, e in zip([rids[j] for j in live_rows.tolist()], map(get, ends.tolist())):
                assert e is not None
                if e.ends is None:
                    e.ends = set()
                e.ends.add(rid)
                reqs[rid] = e
            if cut:  # the batch alone overflows: everything older goes
                self._evict_older(base + 1)
            self._enforce_bounds(now)
            return hits

    def _match_trie(self, trie: BatchTrie, ukeys: list[int]) -> dict[int, IndexNode]:
        """Batch-trie nodes already in the tree, and their tree nodes
        (Python work only for nodes whose parent is in the tree)."""
        out: dict[int, IndexNode] = {}
        if not self.root.children or not len(trie):
            return out
        found = np.zeros(len(trie), dtype=bool)
        ds = trie.depth_start.tolist()
        for d in range(len(ds) - 1):
            lo, hi = ds[d], ds[d + 1]
            if d == 0:
                cand = range(lo, hi)
            else:
                cand = (np.flatnonzero(found[trie.parent[lo:hi]]) + lo).tolist()
                if not cand:
                    break
            idx = np.asarray(cand, dtype=np.int64)
            for v, p, k in zip(cand, trie.parent[idx].tolist(), trie.key[idx].tolist()):
                c = (out[p] if d else self.root).children.get(ukeys[k])
                if c is not None:
                    out[v] = c
                    found[v] = True
        return out

    def _survivors(self, trie: BatchTrie) -> tuple[np.ndarray, int]:
        """Which batch-trie nodes the caps keep, and how many they cut. LRU
        order over the batch: by last use, deepest first within a request."""
        keep = np.ones(len(trie), dtype=bool)
        order = np.lexsort((-trie.depth, trie.last))
        cum_tokens = np.concatenate(([0], np.cumsum(trie.tokens[order])))
        total_tokens = int(cum_tokens[-1])
        cut = max(0, len(trie) - self.max_nodes)
        if self.capacity_tokens is not None and total_tokens > self.capacity_tokens:
            need = total_tokens - self.capacity_tokens  # tokens to drop
            cut = max(cut, int(np.searchsorted(cum_tokens, need, side="left")))
        keep[order[:cut]] = False
        return keep, cut

    def _graft(
        self,
        trie: BatchTrie,
        ukeys: np.ndarray,
        keep: np.ndarray,
        refs: np.ndarray,
        matched: dict[int, IndexNode],
        base: int,
        now: float,
    ) -> list[IndexNode | None]:
        """Kept batch-trie nodes into the tree (parents first); returns the
        tree node of each batch-trie node (``None``: not kept). The leaves
        among them join the LRU heap."""
        objs: list[IndexNode | None] = [None] * len(trie)
        root = self.root
        is_matched = _mask(len(trie), matched)
        idx = np.flatnonzero(keep & ((refs > 0) | is_matched))
        new = idx[~is_matched[idx]]
        # parents first, and each node's new children in the order their
        # first request reached them (the children order one-by-one gives)
        new = new[np.lexsort((trie.first[new], trie.depth[new]))]
        # matched nodes: refreshed in place (refs added, last use moved up)
        for v, r, tick in zip(
            (m := idx[is_matched[idx]]).tolist(), refs[m].tolist(), (trie.last[m] + base + 1).tolist()
        ):
            node = matched[v]
            node.refs += r
            node.tick, node.stamp = tick, now
            objs[v] = node
        for v, p, k, t, tick, r in zip(
            new.tolist(),
            trie.parent[new].tolist(),
            ukeys[trie.key[new]].tolist(),
            trie.tokens[new].tolist(),
            (trie.last[new] + base + 1).tolist(),
            refs[new].tolist(),
        ):
            up = root if p < 0 else objs[p]
            node = objs[v] = up.children[k] = IndexNode(k, t, up, r, tick, now)
        self.tokens += int(trie.tokens[new].sum())
        self.nodes += len(new)
        # leaves: kept nodes with no kept child (matched ones may have old children)
        has_child = np.zeros(len(trie), dtype=bool)
        kept_parents = trie.parent[idx]
        has_child[kept_parents[kept_parents >= 0]] = True
        seq = self._seq
        fresh = []
        for v in idx[~has_child[idx]].tolist():
            node = objs[v]
            if node is not None and not node.children:
                seq += 1
                fresh.append((node.tick, seq, node))
        self._seq = seq
        self._heap.extend(fresh)
        heapq.heapify(self._heap)
        return objs

    def _evict_older(self, tick: int) -> None:
        """Cache-driven eviction of every leaf last used before ``tick``."""
        heap = self._heap
        while heap:
            t, _, v = heap[0]
            if not v.alive or v.children or v.tick != t:
                heapq.heappop(heap)
                continue
            if t >= tick:
                break
            heapq.heappop(heap)
            self._evict_leaf(v, "capacity")

    def touch(self, rid: str) -> bool:
        """Mark a request's cached path as just used (a cache hit seen
        elsewhere). Returns whether the id is live."""
        with self._lock:
            end = self._requests.get(rid)
            if end is None:
                return False
            self._tick += 1
            now = self._clock()
            v: IndexNode | None = end
            while v is not None and v is not self.root:
                v.tick, v.stamp = self._tick, now
                v = v.parent
            self._requests.move_to_end(rid)
            self._push(end)
            return True

    def evict(self, rids: Iterable[str]) -> EvictionReport:
        """Drop requests the engine evicted; their blocks go unless another
        live request still holds them. Unknown ids are reported, not errors."""
        report = EvictionReport()
        with self._lock:
            for rid in dict.fromkeys(rids):
                if rid not in self._requests:
                    report.not_found.append(rid)
                    continue
                n0, t0 = self.nodes, self.tokens
                self._drop_request(rid)
                self._evicted["engine"] += 1
                report.removed.append(rid)
                report.nodes_removed += n0 - self.nodes
                report.tokens_removed += t0 - self.tokens
        return report

    def expire(self) -> int:
        """Apply TTL and caps now; returns requests dropped."""
        with self._lock:
            before = len(self._requests)
            self._enforce_bounds(self._clock())
            return before - len(self._requests)

    # -- export / load -----------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """The state as JSON-ready data: ``{"tick", "nodes": [[parent, key,
        tokens, tick, age], ...], "requests": [[rid, node], ...], "counters"}``.

        Nodes are in preorder (a parent before its children; parent ``-1`` is
        the root), children in insertion order; ages are seconds since last
        use. Requests in LRU order. O(nodes + requests), under the lock.
        """
        with self._lock:
            now = self._clock()
            nodes: list[list[Any]] = []
            pos: dict[int, int] = {id(self.root): -1}
            stack = [self.root]
            while stack:
                v = stack.pop()
                if v is not self.root:
                    assert v.parent is not None
                    pos[id(v)] = len(nodes)
                    age = round(max(0.0, now - v.stamp), 3)
                    nodes.append([pos[id(v.parent)], v.key, v.tokens, v.tick, age])
                stack.extend(reversed(v.children.values()))  # popped in insertion order: restored alike
            return {
                "tick": self._tick,
                "nodes": nodes,
                "requests": [[rid, pos[id(end)]] for rid, end in self._requests.items()],
                "counters": {
                    "inserted": self._inserted,
                    "hit_tokens": self._hit_tokens,
                    "sent_tokens": self._sent_tokens,
                    "evicted": {r: self._evicted[r] for r in _EVICTION_REASONS},
                },
            }

    def load(self, data: Any, *, downtime: float = 0.0) -> int:
        """Replace the whole state by :meth:`export` data (all or nothing).

        ``downtime`` seconds are added to every age, so TTLs keep counting
        across a restart; this index's own bounds apply right after. Returns
        the requests those bounds dropped. A bad export raises
        :class:`~contextpilot.core.persist.SnapshotError` naming the field,
        and the index is unchanged. O(nodes + requests).
        """
        tree = self._parse(as_dict(data, "index"), downtime)
        with self._lock:
            saved = self._swap(tree)
            before = len(self._requests)
            try:
                self._enforce_bounds(self._clock())
                self.check()
            except AssertionError as e:
                self._swap(saved)
                raise SnapshotError(f"index invariant broken: {e}") from None
            return before - len(self._requests)

    def _parse(self, data: dict[str, Any], downtime: float) -> _Tree:
        now = self._clock()
        root = IndexNode(0, 0, None)
        built: list[IndexNode] = []
        tokens = 0
        for i, row in enumerate(as_list(data.get("nodes"), "index.nodes")):
            if not isinstance(row, list) or len(row) != 5:
                raise SnapshotError(f"index.nodes[{i}]: expected [parent, key, tokens, tick, age]")
            parent_i = as_int(row[0], f"index.nodes[{i}].parent", -1)
            if parent_i >= i:
                raise SnapshotError(f"index.nodes[{i}]: parent {parent_i} does not come first")
            parent = root if parent_i < 0 else built[parent_i]
            key = as_int(row[1], f"index.nodes[{i}].key", 0)
            if key in parent.children:
                raise SnapshotError(f"index.nodes[{i}]: key {key} twice under one parent")
            v = IndexNode(key, as_int(row[2], f"index.nodes[{i}].tokens", 0), parent)
            v.tick = as_int(row[3], f"index.nodes[{i}].tick", 0)
            v.stamp = now - as_seconds(row[4], f"index.nodes[{i}].age") - downtime
            parent.children[key] = v
            built.append(v)
            tokens += v.tokens
        requests: OrderedDict[str, IndexNode] = OrderedDict()
        for i, row in enumerate(as_list(data.get("requests"), "index.requests")):
            if not isinstance(row, list) or len(row) != 2 or not isinstance(row[0], str) or not row[0]:
                raise SnapshotError(f"index.requests[{i}]: expected [request id, node]")
            rid, at = row[0], as_int(row[1], f"index.requests[{i}].node", 0)
            if at >= len(built) or rid in requests:
                raise SnapshotError(f"index.requests[{i}]: unknown node or repeated id")
            end = built[at]
            if end.ends is None:
                end.ends = set()
            end.ends.add(rid)
            requests[rid] = end
        # refs bottom-up: preorder reversed visits children before parents
        for v in reversed(built):
            v.refs += len(v.ends or ())
            if v.refs == 0:
                raise SnapshotError("index: a cached block no live request runs through")
            assert v.parent is not None
            v.parent.refs += v.refs
        heap = [(v.tick, i, v) for i, v in enumerate(built) if not v.children]
        heapq.heapify(heap)
        counters = as_dict(data.get("counters"), "index.counters")
        evicted = as_dict(counters.get("evicted"), "index.counters.evicted")
        return _Tree(
            root=root,
            requests=requests,
            heap=heap,
            tick=max(as_int(data.get("tick"), "index.tick", 0), max((v.tick for v in built), default=0)),
            tokens=tokens,
            nodes=len(built),
            inserted=as_int(counters.get("inserted"), "index.counters.inserted", 0),
            hit_tokens=as_int(counters.get("hit_tokens"), "index.counters.hit_tokens", 0),
            sent_tokens=as_int(counters.get("sent_tokens"), "index.counters.sent_tokens", 0),
            evicted=Counter(
                {r: as_int(evicted.get(r, 0), f"index.counters.evicted.{r}", 0) for r in _EVICTION_REASONS}
            ),
        )

    def _swap(self, tree: _Tree) -> _Tree:
        """Install ``tree`` (caller holds the lock); returns the old state."""
        old = _Tree(
            self.root, self._requests, self._heap, self._tick, self.tokens, self.nodes,
            self._inserted, self._hit_tokens, self._sent_tokens, self._evicted,
        )  # fmt: skip
        self.root, self._requests, self._heap = tree.root, tree.requests, tree.heap
        self._seq, self._tick = len(tree.heap), tree.tick
        self.tokens, self.nodes = tree.tokens, tree.nodes
        self._inserted, self._hit_tokens, self._sent_tokens = tree.inserted, tree.hit_tokens, tree.sent_tokens
        self._evicted = tree.evicted
        return old

    # -- internals -------------------------------------------------------------

    def _push(self, node: IndexNode) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (node.tick, self._seq, node))
        if len(self._heap) > 2 * self.nodes + 1024:
            self._heap = [(v.tick, i, v) for i, v in enumerate(self._leaves())]
            heapq.heapify(self._heap)
            self._seq = len(self._heap)

    def _leaves(self) -> list[IndexNode]:
        out, stack = [], list(self.root.children.values())
        while stack:
            v = stack.pop()
            if v.children:
                stack.extend(v.children.values())
            else:
                out.append(v)
        return out

    def _drop_request(self, rid: str) -> None:
        end = self._requests.pop(rid)
        assert end.ends is not None
        end.ends.discard(rid)
        v: IndexNode | None = end
        while v is not None and v is not self.root:
            v.refs -= 1
            parent = v.parent
            if v.refs == 0:
                self._remove_leaf(v)
            v = parent

    def _remove_leaf(self, v: IndexNode) -> None:
        parent = v.parent
        assert parent is not None and not v.children
        del parent.children[v.key]
        v.alive = False
        self.tokens -= v.tokens
        self.nodes -= 1
        if parent is not self.root and not parent.children:
            self._push(parent)

    def _evict_leaf(self, v: IndexNode, reason: str) -> None:
        """Cache-driven eviction of one leaf: requests ending here keep
        what remains of their path, or are dropped when nothing does."""
        parent = v.parent
        assert parent is not None
        if v.ends:
            if parent is self.root:
                for rid in v.ends:
                    del self._requests[rid]
                    self._evicted[reason] += 1
            else:
                if parent.ends is None:
                    parent.ends = set()
                for rid in v.ends:
                    parent.ends.add(rid)
                    self._requests[rid] = parent
            v.ends = None
        self._remove_leaf(v)

    def _over(self) -> str | None:
        if self.capacity_tokens is not None and self.tokens > self.capacity_tokens:
            return "capacity"
        if self.nodes > self.max_nodes:
            return "capacity"
        return None

    def _enforce_bounds(self, now: float) -> None:
        heap = self._heap
        horizon = now - self.ttl if self.ttl is not None else -math.inf
        while heap:
            tick, _, v = heap[0]
            if not v.alive or v.children or v.tick != tick:
                heapq.heappop(heap)  # stale entry
                continue
            # v is the least recently used leaf
            reason = self._over() or ("ttl" if v.stamp <= horizon else None)
            if reason is None:
                break
            heapq.heappop(heap)
            self._evict_leaf(v, reason)
        while len(self._requests) > self.max_requests:
            self._drop_request(next(iter(self._requests)))
            self._evicted["capacity"] += 1

    # -- checking -------------------------------------------------------------

    def check(self) -> None:
        """Raise ``AssertionError`` if any invariant is broken (for tests)."""
        with self._lock:
            tokens = nodes = 0
            seen: dict[str, IndexNode] = {}
            stack = [self.root]
            while stack:
                v = stack.pop()
                ends = v.ends or set()
                for rid in ends:
                    assert rid not in seen, f"request {rid} ends twice"
                    seen[rid] = v
                total = len(ends) + sum(c.refs for c in v.children.values())
                if v is not self.root:
                    assert v.alive, "dead node in tree"
                    assert v.refs == total, f"refs {v.refs} != {total}"
                    assert v.refs >= 1, "node without live request"
                    tokens += v.tokens
                    nodes += 1
                for k, c in v.children.items():
                    assert c.key == k and c.parent is v, "broken parent link"
                    assert c.tick <= v.tick or v is self.root, "child used after parent"
                    stack.append(c)
            assert not self.root.ends, "request ending at root"
            assert tokens == self.tokens, f"tokens {tokens} != {self.tokens}"
            assert nodes == self.nodes, f"nodes {nodes} != {self.nodes}"
            assert seen.keys() == self._requests.keys(), "request map out of sync"
            for rid, v in seen.items():
                assert self._requests[rid] is v, f"request {rid} points elsewhere"
            if self.capacity_tokens is not None:
                assert self.tokens <= self.capacity_tokens, "over capacity"
            assert self.nodes <= self.max_nodes and len(self._requests) <= self.max_requests
