"""A dependency-free progress bar on stderr.

Silent for work that ends within ``after`` seconds; then a bar redrawn in
place on a terminal, or a line per 10% elsewhere (CI logs stay short).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int, label: str, after: float = 2.0, stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.label = label
        self.after = after
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._shown = False

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        elapsed = time.monotonic() - self.start
        if elapsed < self.after and self.done < self.total:
            return
        frac = self.done / self.total
        if self._tty:
            width = 30
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s")
            self._shown = True
        else:
            decile = int(frac * 10)
            if decile > self._last_decile:
                self._last_decile = decile
                self.stream.write(f"{self.label}: {self.done}/{self.total} ({elapsed:.1f}s)\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
