"""Which engine replica serves a request: cache-aware routing under load limits.

Each replica has its own live index (:class:`~contextpilot.core.index.PrefixIndex`,
what that engine is believed to hold). For a request the router asks every
index how many tokens of it are cached there:

* a fixed-order prompt (a proxied completion): the longest cached prefix of
  its block sequence (``PrefixIndex.match``);
* a reorderable set of blocks (``/reorder``): the heaviest cached path made
  of its blocks (``PrefixIndex.heaviest_path``), which the planner will then
  follow, so that is the prefix the engine will reuse.

Policy ``cache-aware``:

1. a replica is *overloaded* when its in-flight requests reach its
   ``max_inflight``, its in-flight prompt tokens reach its
   ``max_inflight_tokens``, or it has ``max_imbalance`` more in-flight
   requests than the least busy replica;
2. a replica's *affinity* is its cached prefix beyond what every warm
   replica (one whose index holds anything) has of this request: a system
   prompt all replicas hold decides nothing, and while only one replica is
   warm, new work spreads to cold ones (at most R - 1 requests pay for
   that). Among replicas not overloaded, the one with the highest affinity
   wins if it is > 0 and at least ``min_match`` of the prompt's tokens;
   ties go to the least loaded (reason ``cache``, or ``spill`` when a
   replica with a longer prefix was skipped for being overloaded);
3. else the least loaded replica not overloaded (``balance``);
4. when every replica is overloaded, the least loaded of all (``overload``).

Replicas *marked down* (:meth:`Router.mark_down`: the engine refused a
connection or failed; :mod:`contextpilot.server.failover` marks them and
its background probe brings them back) are left out of every policy's
choice, as are replicas a request already tried (``exclude``); when that
leaves none, every replica not excluded is a candidate again (a down mark
may be stale, and refusing outright helps nobody).

*Least loaded* orders by: in-flight requests (as a share of the limit when
one is set), in-flight tokens, tokens in the replica's index (emptier
caches take new content), requests routed so far, position. Other policies:
``round-robin``, ``random`` (seeded) and ``least-loaded`` (ignores caches),
for comparison and as fallbacks. Batches are split by
:meth:`Router.assign_groups`: whole prefix-sharing groups go to the replica
holding most of them, capped at ``(1 + batch_slack)`` times a fair share of
the batch's tokens.

Invariants: per replica, in-flight requests and tokens equal what was
acquired minus what was released and never go negative (a
:class:`Lease` releases at most once); per-replica state is O(1) and the
router keeps nothing per request, so its memory is O(replicas).

Cost: a decision is one index lookup per replica, O(R · len(blocks)) for
sequences and O(R · budget) for sets, plus O(R) to choose. Thread-safe:
choosing and acquiring happen under one lock, so concurrent requests see
each other's load.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["POLICIES", "REASONS", "Decision", "Lease", "Load", "Router"]

POLICIES = ("cache-aware", "round-robin", "random", "least-loaded")
#: why a replica was chosen (a fixed vocabulary: bounded metric labels)
REASONS = (
    "single",
    "cache",
    "spill",
    "balance",
    "overload",
    "round-robin",
    "random",
    "least-loaded",
    "pinned",
    "sticky",
    "batch",
)


class _Index(Protocol):
    tokens: int

    def match(self, keys: Sequence[int]) -> int: ...

    def heaviest_path(
        self, available: Counter[int], start=None, budget: int = 128
    ) -> tuple[list[int], object]: ...


@dataclass
class Load:
    """Live load of one replica (guarded by the router's lock)."""

    inflight: int = 0
    inflight_tokens: int = 0
    #: decisions that chose this replica
    routed: int = 0
    routed_tokens: int = 0
    #: decisions per reason
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class Decision:
    replica: int
    reason: str
    #: predicted cached tokens per replica (cache-aware only; else empty)
    hits: tuple[int, ...] = ()
    tokens: int = 0


class Lease:
    """In-flight work on one replica; :meth:`release` once it is done
    (idempotent, so error paths may call it again)."""

    __slots__ = ("_router", "replica", "tokens", "_done")

    def __init__(self, router: Router, replica: int, tokens: int) -> None:
        self._router, self.replica, self.tokens, self._done = router, replica, tokens, False

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._router._release(self.replica, self.tokens)


class Router:
    """See the module docstring. ``indexes[i]`` is replica i's live index;
    ``max_inflight`` / ``max_inflight_tokens`` are per replica (``None``: no
    limit); ``max_imbalance``: in-flight requests over the least busy
    replica that count as overloaded (``None``: off)."""

    def __init__(
        self,
        indexes: Sequence[_Index],
        policy: str = "cache-aware",
        *,
        max_inflight: Sequence[int | None] | None = None,
        max_inflight_tokens: Sequence[int | None] | None = None,
        max_imbalance: int | None = None,
        min_match: float = 0.0,
        batch_slack: float = 0.25,
        seed: int = 0,
        budget: int = 128,
    ) -> None:
        n = len(indexes)
        if n < 1:
            raise ValueError("a router needs at least one replica")
        if policy not in POLICIES:
            raise ValueError(f"routing policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if not 0.0 <= min_match <= 1.0:
            raise ValueError(f"min_match must be in [0, 1], got {min_match!r}")
        if max_imbalance is not None and max_imbalance < 1:
            raise ValueError(f"max_imbalance must be >= 1 or None, got {max_imbalance!r}")
        if batch_slack < 0:
            raise ValueError("batch_slack must be >= 0")
        self.indexes = list(indexes)
        self.policy = policy
        self.max_inflight = list(max_inflight) if max_inflight is not None else [None] * n
        self.max_tokens = list(max_inflight_tokens) if max_inflight_tokens is not None else [None] * n
        if len(self.max_inflight) != n or len(self.max_tokens) != n:
            raise ValueError("one limit per replica")
        for lim in (*self.max_inflight, *self.max_tokens):
            if lim is not None and lim < 1:
                raise ValueError("in-flight limits must be >= 1 or None")
        self.max_imbalance = max_imbalance
        self.min_match = min_match
        self.batch_slack = batch_slack
        self.budget = budget
        self.loads = [Load() for _ in range(n)]
        #: replicas marked down (skipped until marked up)
        self.down: set[int] = set()
        self._rng = random.Random(seed)
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.indexes)

    # -- what each replica holds ------------------------------------------------

    def sequence_hits(self, keys: Sequence[int]) -> list[int]:
        """Cached-prefix tokens of a fixed-order prompt on each replica."""
        return [ix.match(keys) for ix in self.indexes]

    def set_hits(self, keys: Sequence[int], tokens: Sequence[int]) -> list[int]:
        """Tokens of the heaviest cached path made of these blocks, per replica."""
        weight = dict(zip(keys, tokens))
        avail = Counter(keys)
        out = []
        for ix in self.indexes:
            path, _ = ix.heaviest_path(avail, budget=self.budget)
            out.append(sum(weight[k] for k in path))
        return out

    # -- decisions --------------------------------------------------------------

    def route(
        self,
        hits: Sequence[int] | None,
        tokens: int,
        acquire: bool = True,
        min_match: float | None = None,
        exclude: Collection[int] = (),
    ) -> tuple[Decision, Lease | None]:
        """Choose a replica for a request of ``tokens`` prompt tokens whose
        cached prefix per replica is ``hits`` (``None``: unknown, e.g.
        passthrough). With ``acquire`` the request is counted in flight
        there until the returned lease is released. ``min_match``
        overrides the router's for this request. ``exclude``: replicas
        not to choose (must leave at least one)."""
        with self._lock:
            allowed = self._allowed(exclude)
            d = self._choose(hits, tokens, self.min_match if min_match is None else min_match, allowed)
            self._count(d)
            lease = self._acquire(d.replica, tokens) if acquire else None
        return d, lease

    def acquire(self, replica: int, tokens: int, reason: str | None = None) -> Lease:
        """Count work on a replica chosen elsewhere (``sticky``/``pinned``);
        with ``reason`` it also counts as a routing decision."""
        if not 0 <= replica < len(self.indexes):
            raise ValueError(f"no replica {replica}")
        with self._lock:
            if reason is not None:
                self._count(Decision(replica, reason, (), tokens))
            return self._acquire(replica, tokens)

    # -- availability -----------------------------------------------------------

    def mark_down(self, replica: int) -> bool:
        """Skip this replica from now on; True if it was up."""
        with self._lock:
            was_up = replica not in self.down
            self.down.add(replica)
            return was_up

    def mark_up(self, replica: int) -> bool:
        """Use this replica again; True if it was down."""
        with self._lock:
            was_down = replica in self.down
            self.down.discard(replica)
            return was_down

    def is_down(self, replica: int) -> bool:
        return replica in self.down

    def available(self, exclude: Collection[int] = ()) -> list[int]:
        """Replicas up and not excluded, in order (may be empty)."""
        with self._lock:
            return [i for i in range(len(self.indexes)) if i not in self.down and i not in exclude]

    def _allowed(self, exclude: Collection[int]) -> list[int]:
        everyone = [i for i in range(len(self.indexes)) if i not in exclude]
        if not everyone:
            raise ValueError("every replica is excluded")
        return [i for i in everyone if i not in self.down] or everyone

    def note(self, replica: int, reason: str, tokens: int) -> None:
        """Count a decision made elsewhere without putting work in flight."""
        with self._lock:
            self._count(Decision(replica, reason, (), tokens))

    def _acquire(self, i: int, tokens: int) -> Lease:
        ld = self.loads[i]
        ld.inflight += 1
        ld.inflight_tokens += tokens
        return Lease(self, i, tokens)

    def _release(self, i: int, tokens: int) -> None:
        with self._lock:
            ld = self.loads[i]
            ld.inflight = max(0, ld.inflight - 1)
            ld.inflight_tokens = max(0, ld.inflight_tokens - tokens)

    def _count(self, d: Decision) -> None:
        ld = self.loads[d.replica]
        ld.routed += 1
        ld.routed_tokens += d.tokens
        ld.reasons[d.reason] += 1

    def _load_key(self, i: int) -> tuple[float, int, int, int, int]:
        ld = self.loads[i]
        lim = self.max_inflight[i]
        share = ld.inflight / lim if lim else float(ld.inflight)
        return (share, ld.inflight_tokens, int(getattr(self.indexes[i], "tokens", 0)), ld.routed, i)

    def _overloaded(self, i: int, least: int) -> bool:
        ld = self.loads[i]
        lim, tlim = self.max_inflight[i], self.max_tokens[i]
        if lim is not None and ld.inflight >= lim:
            return True
        if tlim is not None and ld.inflight_tokens >= tlim:
            return True
        return self.max_imbalance is not None and ld.inflight - least >= self.max_imbalance

    def _choose(
        self, hits: Sequence[int] | None, tokens: int, min_match: float, everyone: list[int]
    ) -> Decision:
        n = len(self.indexes)
        if n == 1:
            return Decision(0, "single", tuple(hits or ()), tokens)
        if self.policy == "round-robin":
            for step in range(n):  # the next allowed one in turn
                i = (self._next + step) % n
                if i in everyone:
                    break
            self._next = (i + 1) % n
            return Decision(i, "round-robin", (), tokens)
        if self.policy == "random":
            return Decision(everyone[self._rng.randrange(len(everyone))], "random", (), tokens)
        if self.policy == "least-loaded" or hits is None:
            return Decision(min(everyone, key=self._load_key), "least-loaded", (), tokens)
        least = min(self.loads[i].inflight for i in everyone)
        open_ = [i for i in everyone if not self._overloaded(i, least)]
        h = tuple(int(x) for x in hits)
        if not open_:
            return Decision(min(everyone, key=self._load_key), "overload", h, tokens)
        warm = [h[i] for i in range(n) if getattr(self.indexes[i], "tokens", 0) > 0]
        base = min(warm) if warm else 0  # held by every warm replica: no reason to pick one
        adv = [max(0, x - base) for x in h]
        best = max(adv[i] for i in open_)
        if best > 0 and best >= min_match * tokens:
            i = min((j for j in open_ if adv[j] == best), key=self._load_key)
            return Decision(i, "spill" if max(h) > h[i] else "cache", h, tokens)
        return Decision(min(open_, key=self._load_key), "balance", h, tokens)

    # -- batches ----------------------------------------------------------------

    def assign_groups(self, group_hits: Sequence[Sequence[int]], group_tokens: Sequence[int]) -> list[int]:
        """Replica for each prefix-sharing group of a batch.

        ``group_hits[g][r]``: cached tokens of group g on replica r (only read
        by ``cache-aware``). Groups go, largest first, to the replica
        holding most of them among the replicas up whose share of the batch
        stays within ``(1 + batch_slack) * total / R`` tokens (ties and cold
        groups: the least assigned); a group that fits nowhere goes to the
        least assigned replica. Counts each group as one decision
        (``batch``). O(G log G + G · R).
        """
        n, g_count = len(self.indexes), len(group_tokens)
        if n == 1:
            out = [0] * g_count
        elif self.policy == "round-robin":
            with self._lock:
                out = [(self._next + g) % n for g in range(g_count)]
                self._next = (self._next + g_count) % n
        elif self.policy == "random":
            with self._lock:
                out = [self._rng.randrange(n) for _ in range(g_count)]
        else:
            with self._lock:
                pool = [r for r in range(n) if r not in self.down] or list(range(n))
            cap = (1.0 + self.batch_slack) * sum(group_tokens) / len(pool)
            assigned = [0] * n
            out = [0] * g_count
            base = {i: self._load_key(i) for i in range(n)}
            for g in sorted(range(g_count), key=lambda g: -group_tokens[g]):
                t = group_tokens[g]
                fits = [r for r in pool if assigned[r] + t <= cap] or pool
                if self.policy == "cache-aware":
                    best = max(group_hits[g][r] for r in fits)
                    if best > 0:
                        fits = [r for r in fits if group_hits[g][r] == best]
                r = min(fits, key=lambda r: (assigned[r], base[r]))
                assigned[r] += t
                out[g] = r
        with self._lock:
            for g, r in enumerate(out):
                self._count(Decision(r, "batch" if n > 1 else "single", (), int(group_tokens[g])))
        return out

    # -- reporting --------------------------------------------------------------

    def snapshot(self) -> list[dict[str, object]]:
        """Per replica: in-flight requests and tokens, decisions by reason."""
        with self._lock:
            return [
                {
                    "inflight": ld.inflight,
                    "inflight_tokens": ld.inflight_tokens,
                    "routed": ld.routed,
                    "routed_tokens": ld.routed_tokens,
                    "reasons": dict(ld.reasons),
                    "max_inflight": self.max_inflight[i],
                    "max_inflight_tokens": self.max_tokens[i],
                    "down": i in self.down,
                }
                for i, ld in enumerate(self.loads)
            ]
