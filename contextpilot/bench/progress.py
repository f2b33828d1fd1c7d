"""Progress bars for the benchmark, on ``tqdm`` (stderr).

Silent for work that ends within ``after`` seconds; then a bar redrawn in
place on a terminal, and at most one line every 10 s elsewhere (CI logs
stay short).
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

__all__ = ["progress"]


def progress(total: int, label: str, after: float = 2.0, stream: TextIO | None = None) -> tqdm:
    """A progress bar over ``total`` steps (a ``tqdm``: ``update()``, ``close()``,
    context manager)."""
    out = stream if stream is not None else sys.stderr
    tty = bool(getattr(out, "isatty", lambda: False)())
    return tqdm(
        total=max(1, total),
        desc=label,
        file=out,
        delay=after,
        mininterval=0.1 if tty else 10.0,
        ascii=not tty,
        dynamic_ncols=tty,
    )
