#!/usr/bin/env python3
"""Adapter: the reference ContextPilot (PyPI ``contextpilot`` 0.5.0) as an
external planner for ``python -m contextpilot.bench --external``.

Run it with an interpreter that has the reference installed, e.g.::

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install contextpilot==0.5.0
    python -m contextpilot.bench --external "reference=/tmp/refenv/bin/python scripts/reference_planner.py"

It only calls the reference's public API (``ContextPilot().reorder``).
Batch mode: one fresh instance plans the whole batch. Online mode: one
instance sees the requests one at a time; a request the reference fails on
(its live index breaks past 1000 children) is sent as given, and counted.
"""

import contextlib
import io
import json
import logging
import sys
import time


def main() -> None:
    req = json.load(sys.stdin)
    contexts, mode = req["contexts"], req.get("mode", "batch")
    logging.disable(logging.CRITICAL)
    import contextpilot as cp  # the reference, in this interpreter

    failures = 0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints banners
        pilot = cp.ContextPilot()
        if mode == "batch":
            reordered, order = pilot.reorder(contexts)
            out = [list(c) for c in reordered]
            order = [int(i) for i in order]
        else:
            out, order = [], list(range(len(contexts)))
            for c in contexts:
                try:
                    r, _ = pilot.reorder([c])
                    out.append(list(r[0]))
                except Exception:
                    failures += 1
                    out.append(list(c))
    seconds = time.perf_counter() - t0
    json.dump({"order": order, "contexts": out, "seconds": seconds, "failures": failures}, sys.stdout)


if __name__ == "__main__":
    main()
