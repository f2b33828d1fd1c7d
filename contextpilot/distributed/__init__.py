"""Scale-out: plan huge batches for several engine replicas.

``plan_shards(data, replicas)`` cuts a batch (an iterable of contexts, or a
``ray.data.Dataset``) into prefix-coherent, token-balanced shards, one per
replica, plans each shard with the core planner in parallel, and returns
each replica's ordered request stream with the requests' input indices.

Ray is optional (``pip install 'contextpilot[ray]'``): nothing here imports
it until a Ray executor or a Dataset is used. The partitioner
(:mod:`contextpilot.distributed.partition`) is pure numpy.
"""

from contextpilot.distributed.executors import LocalExecutor, RayExecutor, get_executor
from contextpilot.distributed.partition import Partition, partition
from contextpilot.distributed.shards import ReplicaStream, ShardedPlan, plan_assigned, plan_shards
from contextpilot.distributed.signatures import Signatures, signatures

__all__ = [
    "LocalExecutor",
    "Partition",
    "RayExecutor",
    "ReplicaStream",
    "ShardedPlan",
    "Signatures",
    "get_executor",
    "partition",
    "plan_assigned",
    "plan_shards",
    "signatures",
]
