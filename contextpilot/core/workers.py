"""Worker processes for planning huge batches, safe from any caller.

``multiprocessing``'s spawn and forkserver start methods re-import the
caller's ``__main__`` in each worker, so a script without an ``if __name__
== "__main__":`` guard would run again there (and fail); fork is unsafe in
threaded callers such as servers. These workers are plain child processes
(``python -c`` running :func:`_serve`) that never import ``__main__``, so
plain scripts, notebooks, ``python -c``/stdin programs and server workers
(daemonic ones included) can all use them.

Protocol, over the child's stdin/stdout: length-prefixed pickles; first
the worker's warm-up report ``(usable, problems)`` (see :func:`_serve`),
then per task ``(function, args)`` with a module-level function (pickled by
name), the reply ``(True, result)`` or ``(False, exception)``. One task per worker at a
time; a feeder thread per worker builds each task's arguments only when it
is sent, so at most one task's input per worker sits in memory.

If workers cannot start or one dies, the task runs in the calling process
instead, with one warning: never a failed call for want of workers.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["WorkerPool", "available_cpus"]

_log = logging.getLogger(__name__)
_HEADER = struct.Struct("<Q")
#: bytes from which a worker's allocations are mapped and unmapped alone
_MMAP_THRESHOLD = 1 << 20
_BOOT = "from contextpilot.core.workers import _serve; _serve({warm!r})"

#: a task: the function and a zero-argument builder of its arguments
Task = tuple[Callable[..., Any], Callable[[], tuple[Any, ...]]]


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _send(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _recv(stream: Any) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("worker closed its pipe")
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("worker closed its pipe mid-message")
    return pickle.loads(data)


def _serve(warm: tuple[str, ...] = ()) -> None:
    """Worker main loop: warm up, say how that went, then run tasks from
    stdin until it closes. ``warm``: modules to import first (the caller's
    task modules), while the parent is still preparing the tasks;
    ``"module:function"`` also calls that function (no arguments; it may
    return ``False`` for "not available here").

    The first message sent is ``(usable, problems)``: ``problems`` lists
    what failed in the warm-up, with the warnings it logged (kept from this
    process's stderr, so the parent reports them once for all workers);
    ``usable`` is false when a module did not import, and then the worker
    exits (its tasks could not run here)."""
    import gc
    import importlib

    gc.disable()  # planning builds millions of small containers; no cycles
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the protocol
    problems: list[str] = []
    usable = True
    caught = _Caught()
    logging.getLogger().addHandler(caught)
    try:
        for name in warm:
            module, _, fn = name.partition(":")
            try:
                loaded = importlib.import_module(module)
            except Exception as e:  # noqa: BLE001 (reported to the parent)
                problems.append(f"cannot import {module} ({e!r})")
                usable = False
                break
            if fn:
                try:
                    if getattr(loaded, fn)() is False:
                        problems.append(f"{name}() returned False")
                except Exception as e:  # noqa: BLE001 (only a head start: the tasks may still run)
                    problems.append(f"{name}() raised {e!r}")
    finally:
        logging.getLogger().removeHandler(caught)
    _send(out, (usable, [*problems, *caught.messages]))
    if not usable:
        return

    while True:
        try:
            fn, args = _recv(inp)
        except EOFError:
            return
        try:
            reply = (True, fn(*args))
        except Exception as e:  # noqa: BLE001 (sent back and raised in the parent)
            reply = (False, e)
        _send(out, reply)


class _Caught(logging.Handler):
    """Messages of the warnings logged during a worker's warm-up."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class _Worker:
    def __init__(self, env: dict[str, str], warm: tuple[str, ...]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT.format(warm=tuple(warm))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self._hello: tuple[bool, list[str]] | None = None

    def hello(self) -> tuple[bool, list[str]]:
        """The worker's warm-up report (see :func:`_serve`), read once;
        blocks until its warm-up is done."""
        if self._hello is None:
            assert self.proc.stdout is not None
            self._hello = _recv(self.proc.stdout)
        return self._hello

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        _send(self.proc.stdin, (fn, args))
        return _recv(self.proc.stdout)

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


class WorkerPool:
    """``n`` worker processes, started at once (their imports overlap the
    caller's work). Use as a context manager; :attr:`size` is 0 when none
    could start (then :meth:`map` runs everything in this process)."""

    def __init__(self, n: int, warm: tuple[str, ...] = ()) -> None:
        self.workers: list[_Worker] = []
        self._warned = False
        self._warn_lock = threading.Lock()  # feeder threads warn too
        if n < 1:
            return
        env = dict(os.environ)
        # the workers import this package the way this process did
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        # glibc raises its mmap threshold as big arrays are freed, after which
        # freed arrays stay in the heap: a worker kept ~300 MB between chunk
        # steps. A fixed threshold returns them at once (ignored elsewhere)
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(_MMAP_THRESHOLD))
        try:
            if not sys.executable:
                raise OSError("no Python executable to start workers with")
            for _ in range(n):
                self.workers.append(_Worker(env, warm))
        except OSError as e:
            self._warn(f"cannot start planning workers ({e}); planning in this process")
            self.close()

    @property
    def size(self) -> int:
        return len(self.workers)

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def _warn(self, msg: str) -> None:
        # one warning per pool, whichever worker or thread meets trouble first
        with self._warn_lock:
            if self._warned:
                return
            self._warned = True
        _log.warning(msg)

    def map(self, tasks: Iterable[Task], retire: bool = False) -> Iterator[Any]:
        """Results of ``tasks`` in order; tasks run on the workers as they
        free up, while the caller consumes earlier results. A task whose
        worker died, or whose warm-up failed to import, runs here instead;
        a warm-up that failed otherwise leaves the worker running the tasks.
        Either way the pool logs one warning in all. An exception raised by
        a task is raised here.

        ``retire``: this is the pool's last map; each worker exits as soon
        as no task is left for it (its memory is freed while the others
        finish and the caller consumes results), and the pool is empty
        afterwards."""
        tasks = list(tasks)
        if not self.workers:
            for fn, make in tasks:
                yield fn(*make())
            return
        results: dict[int, tuple[bool, Any]] = {}
        cond = threading.Condition()
        nxt = [0]

        def feed(w: _Worker) -> None:
            try:
                usable, problems = w.hello()
            except (OSError, EOFError, ValueError, pickle.PickleError) as e:
                usable, problems = False, [repr(e)]
                with cond:
                    if nxt[0] >= len(tasks):
                        # stopped by this pool (every task done or the map
                        # abandoned) while still warming up: nothing to report
                        problems = []
            if problems:
                self._warn(
                    f"planning worker warm-up failed ({'; '.join(problems)}); "
                    + ("the workers plan without it" if usable else "planning in this process")
                )
            if not usable:
                return  # the tasks go to the other workers, or here once none is left
            while True:
                with cond:
                    i = nxt[0]
                    if i < len(tasks):
                        nxt[0] += 1
                if i >= len(tasks):
                    if retire:
                        w.close()  # nothing left for it: free its memory now
                    return
                fn, make = tasks[i]
                try:
                    res = w.run(fn, make())
                except (OSError, EOFError, pickle.PickleError) as e:
                    res = (False, _Lost(e))
                with cond:
                    results[i] = res
                    cond.notify_all()
                if isinstance(res[1], _Lost):
                    return  # this worker is gone; the others carry on

        threads = [threading.Thread(target=feed, args=(w,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        finished = False
        try:
            for i, (fn, make) in enumerate(tasks):
                with cond:
                    while i not in results:
                        if not any(t.is_alive() for t in threads) and i not in results:
                            break  # every worker died before reaching task i
                        cond.wait(0.5)
                    ok, value = results.pop(i, (False, _Lost(EOFError("no worker left"))))
                if ok:
                    yield value
                elif isinstance(value, _Lost):
                    self._warn(
                        f"a planning worker failed ({value.error}); planning its share in this process"
                    )
                    yield fn(*make())
                else:
                    raise value
            finished = True
        finally:
            with cond:
                nxt[0] = len(tasks)  # feeders stop after their current task
            if not finished:  # an error or an interrupt here: stop the workers now
                for w in self.workers:
                    w.proc.kill()
            for t in threads:
                t.join()
            if retire:
                self.close()

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Lost:
    def __init__(self, error: BaseException) -> None:
        self.error = error
