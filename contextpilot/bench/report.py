"""Benchmark output: terminal tables, ``results.json`` and PNG plots."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from contextpilot.bench.runner import Row

__all__ = [
    "engine_table",
    "machine",
    "plot_hits",
    "plot_scale",
    "scale_table",
    "table",
    "text_ids_table",
    "write_json",
]

log = logging.getLogger("contextpilot.bench")


def table(rows: Sequence[Row], labels: Sequence[str]) -> str:
    caps = "".join(f"{lab:>8}" for lab in labels)
    head = f"{'method':<16}{'mode':<8}{'cache':<7}{caps}{'planning':>14}"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "".join(f"{r.hit.get(lab, float('nan')):>8.3f}" for lab in labels)
        t = (
            f"{r.latency_ms:.2f}ms/req"
            if r.mode == "online" and r.latency_ms is not None
            else f"{r.plan_seconds:.3f}s"
        )
        lines.append(f"{r.method:<16}{r.mode:<8}{r.cache:<7}{cells}{t:>14}")
    return "\n".join(lines)


def scale_table(scale: dict) -> str:
    """Per workload: seconds and peak RSS (all processes) of each mode by
    batch size, whether the modes' plans agree, and where the CPU went at
    the largest size."""
    rows, modes = scale["rows"], scale.get("modes", ["stateful"])
    lines = []
    for name in dict.fromkeys(r["workload"] for r in rows):
        mine = [r for r in rows if r["workload"] == name]
        workers = max(r.get("workers", 0) for r in mine)
        head = f"{'requests':>10}" + "".join(f"{m:>22}" for m in modes) + f"{'same plan':>11}{'load':>6}"
        lines += [f"{name} (seconds / peak RSS GiB over all processes; up to {workers} workers)", head]
        for n in dict.fromkeys(r["requests"] for r in mine):
            at = {r["mode"]: r for r in mine if r["requests"] == n}
            cells = "".join(
                f"{at[m]['seconds']:>13.2f}s /{at[m]['peak_rss_bytes'] / 2**30:>5.2f}"
                if m in at
                else f"{'':>22}"
                for m in modes
            )
            same = len({r["digest"] for r in at.values()}) == 1
            load = max(r.get("load", 0.0) for r in at.values())
            lines.append(f"{n:>10,}{cells}{'yes' if same else 'NO':>11}{load:>6.1f}")
        n_max = max(r["requests"] for r in mine)
        for r in (r for r in mine if r["requests"] == n_max):
            phases = ", ".join(f"{k} {v:.1f}" for k, v in r.get("phases", {}).items())
            lines.append(
                f"  {r['mode']} at {n_max:,}, CPU s: {phases}; this process {r['cpu_parent_seconds']:.1f}, "
                f"workers {r['cpu_workers_seconds']:.1f}"
            )
        k = scale.get("exponents", {}).get(name)
        if k is not None:
            lines.append(f"  fitted growth exponent of {modes[-1]} time (N >= 10k): k = {k:.2f}")
    return "\n".join(lines)


def text_ids_table(rows: Sequence[dict]) -> str:
    lines = [
        f"{'workload':<15}{'requests':>9}{'mode':>11}{'text':>9}{'ids':>9}{'text/ids':>10}{'same plan':>11}"
    ]
    for r in rows:
        lines.append(
            f"{r['workload']:<15}{r['requests']:>9}{r['mode']:>11}{r['text_seconds']:>8.3f}s"
            f"{r['ids_seconds']:>8.3f}s{r['ratio']:>10.2f}{'yes' if r['same_plan'] else 'NO':>11}"
        )
    return "\n".join(lines)


def engine_table(runs: Sequence[dict]) -> str:
    lines = [f"{'order':<16}{'requests':>9}{'prompt tok':>12}{'reused':>9}{'prompt time':>13}{'wall':>9}"]
    for r in runs:
        lines.append(
            f"{r['order']:<16}{r['requests']:>9}{r['prompt_tokens']:>12,}{r['reuse']:>9.1%}"
            f"{r['prompt_ms'] / 1000:>12.1f}s{r['wall_seconds']:>8.1f}s"
        )
    return "\n".join(lines)


def machine() -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def write_json(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=float))
    tmp.replace(path)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed (pip install 'contextpilot[bench]'): no plots")
        return None
    return plt


def plot_hits(path: Path, workloads: Sequence[dict], cache: str = "radix") -> Path | None:
    """Grouped bars: hit ratio per method (and mode) at each capacity."""
    plt = _pyplot()
    if plt is None:
        return None
    n = len(workloads)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False)
    for ax, wl in zip(axes[0], workloads):
        rows = [r for r in wl["rows"] if r["cache"] == cache]
        labels = list(rows[0]["hit"]) if rows else []
        width = 0.8 / max(1, len(rows))
        for j, r in enumerate(rows):
            xs = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(labels))]
            ax.bar(xs, [r["hit"][lab] for lab in labels], width, label=f"{r['method']} ({r['mode']})")
        ax.set_xticks(range(len(labels)), [f"cache {lab}" for lab in labels])
        ax.set_ylim(0, 1)
        ax.set_title(f"{wl['name']} ({wl['requests']} requests)")
        ax.set_ylabel("prefix-cache hit ratio")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Simulated prefix-cache hit ratio ({cache} cache)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scale(path: Path, scale: dict, reference: Sequence[tuple[int, float]] = ()) -> Path | None:
    """Time of each mode against request count, log-log, per workload."""
    plt = _pyplot()
    if plt is None:
        return None
    rows = scale["rows"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in dict.fromkeys(r["workload"] for r in rows):
        for mode in scale.get("modes", ["stateful"]):
            pts = [(r["requests"], r["seconds"]) for r in rows if r["workload"] == name and r["mode"] == mode]
            if pts:
                xs, ys = zip(*pts)
                ax.loglog(xs, ys, "o-" if name == "synthetic" else "s--", label=f"{name}, {mode}")
    if reference:
        ax.loglog([n for n, _ in reference], [t for _, t in reference], "x:", label="reference 0.5.0")
    ax.set_xlabel("requests in the batch (20 blocks each)")
    ax.set_ylabel("seconds")
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ax.set_title("ContextPilot().reorder on huge batches")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
