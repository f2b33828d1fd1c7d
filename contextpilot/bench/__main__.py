"""``python -m contextpilot.bench`` (or ``contextpilot bench``): which mode runs.

The options and the ``--help`` text are in :mod:`contextpilot.bench.options`;
the default run (simulated tables, scale series, engine replay, plots) in
:mod:`contextpilot.bench.suite`; the single-purpose modes (``--shards``,
``--memory``, ``--latency``, ``--routing-replicas``, the real-model replay)
in :mod:`contextpilot.bench.modes`. Exit status 0 on success (``--memory``:
1 when over its stated cap).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from contextpilot.bench import modes, report
from contextpilot.bench.methods import External
from contextpilot.bench.options import parse_args
from contextpilot.bench.suite import run_suite

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.shards:
        return modes.run_shards(args)
    out_dir = Path(args.out)
    try:
        externals = [External.parse(s) for s in args.external]
    except ValueError as e:
        raise SystemExit(str(e)) from None
    results: dict = {
        "command": "python -m contextpilot.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": report.machine(),
    }
    if args.memory:
        return modes.run_memory(args, out_dir, results)
    if args.engine == "llama-server" and args.engine_model:
        return modes.run_real_model_mode(args, externals, out_dir, results)
    if args.latency:
        return modes.run_latency(args, out_dir, results)
    if args.routing_replicas:
        return modes.run_routing(args, out_dir, results)
    return run_suite(args, externals, out_dir, results)


if __name__ == "__main__":
    sys.exit(main())
