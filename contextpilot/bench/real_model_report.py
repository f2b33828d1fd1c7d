"""Tables and the plot of the real-model benchmark."""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

__all__ = ["plot", "tables"]

log = logging.getLogger("contextpilot.bench")


def tables(res: dict) -> str:
    lines = [f"\nreal model: {res['workload']} ({res['requests']} requests): {res['description']}"]
    head = f"{'ordering':<30}{'run':>4}{'prompt tok':>12}{'reused':>9}{'prompt time':>13}{'vs retr.':>9}"
    head += f"{'TTFT p50':>10}{'p95':>9}"
    lines += [head, "-" * len(head)]
    base = {r["run"]: r for r in res["runs"] if r["condition"] == "retrieval"}
    for r in res["runs"]:
        b = base.get(r["run"])
        ratio = f"{b['prompt_s'] / r['prompt_s']:.2f}x" if b and r["prompt_s"] else "-"
        lines.append(
            f"{r['condition']:<30}{r['run']:>4}{r['prompt_tokens']:>12,}{r['reuse']:>9.1%}"
            f"{r['prompt_s']:>12.1f}s{ratio:>9}{r['ttft_p50_ms']:>9.0f}ms{r['ttft_p95_ms']:>7.0f}ms"
        )
    qual = res.get("quality") or {}
    if qual.get("conditions"):
        lines.append(
            f"\nanswer quality on {qual['questions']} questions "
            f"({qual['adversarial_or_unanswerable_left_out']} adversarial left out); "
            "differences to retrieval order, paired, 95% bootstrap interval"
        )
        h = f"{'condition':<30}{'F1':>7}{'EM':>7}{'gold logp':>11}  "
        h += f"{'dF1 [95% CI]':<26}{'dlogp [95% CI]':<28}"
        lines += [h, "-" * len(h)]
        for name, c in qual["conditions"].items():
            d = c.get("vs_retrieval")
            f1 = _ci(d["f1"]) if d else ""
            lp = _ci(d["gold_logprob"]) if d else ""
            scores = f"{c['f1']:>7.3f}{c['exact_match']:>7.3f}{c['gold_logprob']:>11.2f}"
            lines.append(f"{name:<30}{scores}  {f1:<26}{lp:<28}")
    return "\n".join(lines)


def _ci(d: dict) -> str:
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def plot(path: Path, result: dict) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib missing: no plot")
        return None
    wls = result["workloads"]
    if not wls:
        return None
    fig, axes = plt.subplots(len(wls), 2, figsize=(12, 3.2 * len(wls)), squeeze=False)
    for row, res in zip(axes, wls):
        summ = res["summary"]
        names = list(summ)
        means = [statistics.fmean(summ[n]["prompt_s"]) for n in names]
        reuse = [statistics.fmean(summ[n]["reuse"]) for n in names]
        ax = row[0]
        ax.barh(names, means, color=["#1f77b4" if "contextpilot" in n else "#aaaaaa" for n in names])
        for y, (m, u) in enumerate(zip(means, reuse)):
            ax.text(m, y, f" {m:.0f}s, reuse {u:.0%}", va="center", fontsize=8)
        ax.set_xlabel("total prompt time (s), mean over runs")
        ax.set_title(f"{res['workload']}: {res['requests']} requests, {result['model']['name']}")
        ax.invert_yaxis()
        ax = row[1]
        qual = (res.get("quality") or {}).get("conditions") or {}
        diffs = [(n, c["vs_retrieval"]["f1"]) for n, c in qual.items() if "vs_retrieval" in c]
        if diffs:
            ys = range(len(diffs))
            ax.errorbar(
                [d["mean"] for _, d in diffs],
                list(ys),
                xerr=[[d["mean"] - d["low"] for _, d in diffs], [d["high"] - d["mean"] for _, d in diffs]],
                fmt="o",
                capsize=3,
            )
            ax.set_yticks(list(ys), [n for n, _ in diffs])
            ax.axvline(0, color="k", lw=0.8)
            ax.set_xlabel("token F1 minus retrieval order (95% CI)")
            ax.invert_yaxis()
        else:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
