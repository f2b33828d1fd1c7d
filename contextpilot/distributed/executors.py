"""Where the parallel steps run: in this process, in local worker
processes, or as Ray tasks (local instance or cluster).

An executor maps a top-level (picklable) function over argument tuples and
returns the results in input order. Ray is imported only when a Ray
executor is created, so this module (and ``contextpilot.distributed``)
imports without it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "get_executor", "require_ray"]

RAY_HINT = "the Ray executor needs Ray: pip install 'contextpilot[ray]'"


def require_ray() -> Any:
    """The ``ray`` module, or an ImportError naming the extra to install."""
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(RAY_HINT) from e
    return ray


class Executor(Protocol):
    def map(self, fn: Callable, args: Iterable[tuple]) -> list: ...


class LocalExecutor:
    """``workers=1``: runs in this process; more: spawned worker processes
    (spawn, not fork: the caller may be threaded). A calling script needs
    the usual ``if __name__ == "__main__":`` guard when ``workers > 1``."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def map(self, fn: Callable, args: Iterable[tuple]) -> list:
        jobs = list(args)
        if self.workers == 1 or len(jobs) <= 1:
            return [fn(*a) for a in jobs]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)), mp_context=ctx) as pool:
            futures = [pool.submit(fn, *a) for a in jobs]
            return [f.result() for f in futures]


class RayExecutor:
    """One Ray task per call, on the Ray instance this process is connected
    to (``ray.init(...)`` first; otherwise Ray starts a local one).
    ``num_cpus``: CPUs reserved per task."""

    def __init__(self, num_cpus: float = 1, **remote_args: Any) -> None:
        self.ray = require_ray()
        self.remote_args = {"num_cpus": num_cpus, **remote_args}

    def map(self, fn: Callable, args: Iterable[tuple]) -> list:
        ray = self.ray
        task = ray.remote(**self.remote_args)(fn)
        refs = [task.remote(*a) for a in args]
        return ray.get(refs)


def get_executor(executor: str | Executor, workers: int = 1) -> Executor:
    if not isinstance(executor, str):
        if not callable(getattr(executor, "map", None)):
            raise ValueError("executor must be 'local', 'ray' or an object with map(fn, args)")
        return executor
    if executor == "local":
        return LocalExecutor(workers)
    if executor == "ray":
        return RayExecutor()
    raise ValueError(f"executor must be 'local', 'ray' or an Executor, got {executor!r}")
