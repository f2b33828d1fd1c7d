"""What a sharded plan returns: one ordered request stream per replica.

Shared by the local pipeline (:mod:`contextpilot.distributed.shards`) and the
Ray Data one (:mod:`contextpilot.distributed.ray_data`), which both build it;
kept apart so neither imports the other at module level.

Invariants of a :class:`ShardedPlan`: every input index appears in exactly
one stream exactly once; ``streams[r].contexts[j]`` holds exactly the
blocks of input request ``streams[r].indices[j]``, reordered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contextpilot.core.blocks import Block
from contextpilot.distributed.partition import Partition

__all__ = ["ReplicaStream", "ShardedPlan"]


@dataclass
class ReplicaStream:
    """What one replica runs, in order."""

    replica: int
    #: input index of each request, in run order
    indices: list[int]
    #: the requests' blocks in planned order, aligned with ``indices``
    contexts: list[list[Block]]
    #: tokens of all blocks of the shard
    tokens: int = 0
    #: tokens the plan shares within the shard at unbounded cache
    shared_tokens: int = 0
    #: seconds the core planner took on this shard (in its worker)
    plan_seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class ShardedPlan:
    streams: list[ReplicaStream]
    #: the partition used (``None`` when the caller gave the assignment)
    partition: Partition | None = None
    #: wall time per step: signatures, partition, plan, total
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def replicas(self) -> int:
        return len(self.streams)

    @property
    def total_tokens(self) -> int:
        return sum(s.tokens for s in self.streams)

    @property
    def shared_tokens(self) -> int:
        return sum(s.shared_tokens for s in self.streams)

    @property
    def imbalance(self) -> float:
        """Max shard tokens / mean shard tokens."""
        loads = [s.tokens for s in self.streams]
        mean = sum(loads) / max(1, len(loads))
        return max(loads) / mean if mean > 0 else 1.0
