"""Planning methods compared by the benchmark.

A batch method maps contexts to ``(order, reordered)`` with the same
contract as ``ContextPilot.reorder``; an online method sees requests one at
a time in arrival order and may only reorder blocks within each.

External planners join through a JSON-over-stdin protocol: the command
reads ``{"contexts": [[...], ...], "mode": "batch" | "online"}`` and writes
``{"order": [...], "contexts": [[...], ...]}`` (online: ``order`` is the
identity), optionally with ``"seconds"``, its own planning time (otherwise
the command's wall time is reported).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.pilot import ContextPilot

__all__ = [
    "BATCH_METHODS",
    "External",
    "frequency_order",
    "ours_batch",
    "ours_online",
    "retrieval_order",
]

Contexts = Sequence[Sequence[Block]]
Result = tuple[list[int], list[list[Block]]]


def retrieval_order(contexts: Contexts, token_counter: Callable | None = None) -> Result:
    """As retrieved: requests in arrival order, blocks by relevance."""
    return list(range(len(contexts))), [list(c) for c in contexts]


def frequency_order(contexts: Contexts, token_counter: Callable | None = None) -> Result:
    """Blocks by batch-wide popularity (token-weighted), then requests
    sorted lexicographically so equal prefixes run back to back."""
    table = BlockTable(token_counter)
    ids = table.intern_many(contexts)
    freq = Counter(b for c in ids for b in set(c))
    tok = table.token_list

    def key(b: int) -> tuple[int, int]:
        return (-freq[b] * tok[b], b)

    seqs = [sorted(c, key=key) for c in ids]
    order = sorted(range(len(seqs)), key=lambda i: [key(b) for b in seqs[i]])
    return order, [[table.block(b) for b in seqs[i]] for i in order]


def ours_batch(contexts: Contexts, token_counter: Callable | None = None) -> Result:
    """contextpilot's batch planner (a fresh, stateless plan)."""
    pilot = ContextPilot(stateless=True, token_counter=token_counter)
    reordered, order = pilot.reorder(contexts)
    return order, reordered


def ours_online(
    contexts: Contexts, token_counter: Callable | None = None, capacity: float | None = None
) -> Result:
    """contextpilot online: one stateful instance, one request per call.
    ``capacity`` (tokens) lets the live index mirror the engine's LRU."""
    pilot = ContextPilot(token_counter=token_counter, capacity_tokens=capacity)
    out = [pilot.reorder([c])[0][0] for c in contexts]
    return list(range(len(contexts))), out


BATCH_METHODS: dict[str, Callable[..., Result]] = {
    "retrieval": retrieval_order,
    "frequency": frequency_order,
    "contextpilot": ours_batch,
}


@dataclass
class External:
    """A planner run as a command speaking the JSON protocol (see module)."""

    name: str
    command: str
    timeout: float = 3600.0
    #: planning seconds the command reported for its last call, if any
    last_seconds: float | None = None

    @classmethod
    def parse(cls, spec: str) -> External:
        """``NAME=COMMAND`` as given on the command line."""
        name, sep, command = spec.partition("=")
        if not sep or not name.strip() or not command.strip():
            raise ValueError(f"--external wants NAME=COMMAND, got {spec!r}")
        return cls(name.strip(), command.strip())

    def __call__(
        self, contexts: Contexts, token_counter: Callable | None = None, mode: str = "batch"
    ) -> Result:
        payload = json.dumps({"contexts": [list(c) for c in contexts], "mode": mode})
        t0 = time.perf_counter()
        proc = subprocess.run(
            shlex.split(self.command), input=payload, capture_output=True, text=True, timeout=self.timeout
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(
                f"external planner {self.name!r} failed ({proc.returncode}): {proc.stderr[-2000:]}"
            )
        try:
            out = json.loads(proc.stdout)
            order, reordered = [int(i) for i in out["order"]], out["contexts"]
        except (ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"external planner {self.name!r} wrote no valid JSON result: {e}") from None
        self.last_seconds = float(out.get("seconds", wall))
        return order, reordered
