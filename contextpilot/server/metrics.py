"""A small Prometheus registry: counters, gauges, histograms, text format.

Thread-safe. Label sets are bounded by construction: callers only use
labels from fixed vocabularies (endpoint paths, status classes).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence

__all__ = ["Counter", "Gauge", "GaugeFamily", "Histogram", "Registry"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values))
    return "{" + inner + "}"


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metric:
    kind = ""

    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_, tuple(labels)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {v:g}" for k, v in items]


class Gauge(_Metric):
    """A value read at scrape time from a callback."""

    kind = "gauge"

    def __init__(self, name: str, help_: str, read: Callable[[], float]) -> None:
        super().__init__(name, help_)
        self.read = read

    def render(self) -> list[str]:
        return self.header() + [f"{self.name} {float(self.read()):g}"]


class GaugeFamily(_Metric):
    """Labelled values read at scrape time: ``read()`` maps label tuples to
    values (e.g. one per replica; the caller keeps the label set bounded).
    ``kind="counter"`` for monotonic totals kept elsewhere."""

    def __init__(
        self,
        name: str,
        help_: str,
        labels: Sequence[str],
        read: Callable[[], dict[tuple[str, ...], float]],
        kind: str = "gauge",
    ) -> None:
        super().__init__(name, help_, labels)
        self.read = read
        self.kind = kind

    def render(self) -> list[str]:
        items = sorted(self.read().items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {float(v):g}" for k, v in items]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> None:
        super().__init__(name, help_, labels)
        self.buckets = tuple(sorted(buckets))
        self._data: dict[tuple[str, ...], list] = {}

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            entry = self._data.get(labels)
            if entry is None:
                entry = self._data[labels] = [[0] * (len(self.buckets) + 1), 0.0]
            entry[0][bisect.bisect_left(self.buckets, value)] += 1  # le is inclusive
            entry[1] += value

    def render(self) -> list[str]:
        out = self.header()
        with self._lock:
            items = sorted((k, (list(c), s)) for k, (c, s) in self._data.items())
        for key, (counts, total) in items:
            cum = 0
            for bound, c in zip([*self.buckets, float("inf")], counts):
                cum += c
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lab = _labels((*self.label_names, "le"), (*key, le))
                out.append(f"{self.name}_bucket{lab} {cum}")
            base = _labels(self.label_names, key)
            out.append(f"{self.name}_sum{base} {total:g}")
            out.append(f"{self.name}_count{base} {cum}")
        return out


class Registry:
    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for m in self._metrics:
            lines += m.render()  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"
