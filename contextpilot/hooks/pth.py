"""Installing the engine hooks into an environment: a one-line ``.pth``.

Python runs every ``import`` line of a ``*.pth`` file in site-packages at
start-up. Ours is::

    import os; os.environ.get('CONTEXTPILOT_INDEX_URL') and __import__(...).activate()

so with the variable unset an interpreter pays one dictionary lookup and
imports nothing; with it set, ``activate()`` installs the import hook that
patches SGLang / vLLM when (and if) the engine loads them.

Two flavours:
- package: the line imports ``contextpilot.hooks.activation`` (contextpilot
  installed in the engine's environment; the hooks need only the stdlib);
- standalone: one generated file, ``contextpilot_hooks.py``, assembled from
  this package's own hook sources (``assemble_standalone``), for engine
  hosts without contextpilot. It installs itself:
  ``python contextpilot_hooks.py [--site DIR] [--uninstall]``.

``measure_cost`` times interpreter start-up with and without the line.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import shutil
import site
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from contextpilot.hooks.notifier import ENV_INDEX_URL

__all__ = [
    "PTH_NAME",
    "STANDALONE_MODULE",
    "assemble_standalone",
    "install",
    "main",
    "measure_cost",
    "uninstall",
]

PTH_NAME = "contextpilot-hooks.pth"
STANDALONE_MODULE = "contextpilot_hooks"
PACKAGE_MODULE = "contextpilot.hooks.activation"
_STANDALONE_MARK = "# contextpilot standalone engine hooks (generated)"

#: modules assembled, in dependency order, into the standalone file
STANDALONE_SOURCES = (
    "contextpilot.core.ids",
    "contextpilot.hooks.notifier",
    "contextpilot.hooks.tracker",
    "contextpilot.hooks.patching",
    "contextpilot.hooks.sglang",
    "contextpilot.hooks.vllm",
    "contextpilot.hooks.activation",
    "contextpilot.hooks.pth",
)


def pth_line(module: str) -> str:
    """The single line written to the ``.pth`` file."""
    return (
        f"import os; os.environ.get({ENV_INDEX_URL!r}) and "
        f"__import__({module!r}, fromlist=['activate']).activate()\n"
    )


def default_site() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def install(site: Path | None = None, standalone_file: str | os.PathLike[str] | None = None) -> Path:
    """Write the ``.pth`` (and, standalone, the module) into ``site``."""
    site = Path(site) if site is not None else default_site()
    if not site.is_dir():
        raise ValueError(f"site-packages directory {str(site)!r} does not exist")
    module = PACKAGE_MODULE
    if standalone_file is not None:
        src = Path(standalone_file)
        if not src.read_text().startswith(_STANDALONE_MARK):
            raise ValueError(f"{str(src)!r} is not a generated contextpilot standalone hook file")
        dst = site / f"{STANDALONE_MODULE}.py"
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
        module = STANDALONE_MODULE
    pth = site / PTH_NAME
    pth.write_text(pth_line(module))
    return pth


def uninstall(site: Path | None = None) -> list[Path]:
    """Remove what ``install`` wrote; returns the removed files."""
    site = Path(site) if site is not None else default_site()
    removed = []
    for path in (site / PTH_NAME, site / f"{STANDALONE_MODULE}.py"):
        if path.name.endswith(".py") and path.exists() and not path.read_text().startswith(_STANDALONE_MARK):
            continue  # not ours
        if path.exists():
            path.unlink()
            removed.append(path)
    cache = site / "__pycache__"
    for pyc in cache.glob(f"{STANDALONE_MODULE}.*.pyc") if cache.is_dir() else ():
        pyc.unlink()
    return removed


# -- the standalone file -----------------------------------------------------------


def _strip_plan(tree: ast.Module) -> tuple[set[int], set[str]]:
    """Lines to drop from one source, and the top-level names it defines."""
    drop: set[int] = set()
    names: set[str] = set()
    for i, node in enumerate(tree.body):
        lines = set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            drop |= lines  # module docstring
        elif isinstance(node, ast.ImportFrom) and (
            node.module == "__future__" or (node.module or "").split(".")[0] == "contextpilot"
        ):
            drop |= lines
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "contextpilot" for a in node.names):
            drop |= lines
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            drop |= lines
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return drop, names


def assemble_standalone() -> str:
    """One importable module made of ``STANDALONE_SOURCES``, verbatim but for
    their cross-imports, docstrings and ``__all__``. Raises ``ValueError`` if
    two sources define the same top-level name differently."""
    parts = [
        _STANDALONE_MARK + "\n",
        '"""contextpilot engine eviction hooks, standalone (SGLang, vLLM).\n\n'
        "Install into the engine's environment: python contextpilot_hooks.py [--site DIR]\n"
        "Remove: python contextpilot_hooks.py --uninstall [--site DIR]\n"
        f"Enable per run: {ENV_INDEX_URL}=http://host:8765 <engine command>\n"
        'Generated by `python -m contextpilot.install_hook --standalone PATH`; do not edit."""\n\n',
        "from __future__ import annotations\n",
    ]
    seen: dict[str, str] = {}
    for name in STANDALONE_SOURCES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"source of {name} not found")
        source = Path(spec.origin).read_text()
        drop, names = _strip_plan(ast.parse(source))
        for n in names:
            if n in seen and n != "log":  # every module's `log` is the same logger
                raise ValueError(f"{n!r} is defined in both {seen[n]} and {name}")
            seen[n] = name
        kept = [line for i, line in enumerate(source.splitlines(keepends=True), 1) if i not in drop]
        parts.append(f"\n\n# ---- {name} " + "-" * max(0, 70 - len(name)) + "\n")
        parts.append("".join(kept).strip("\n") + "\n")
    parts.append('\n\nif __name__ == "__main__":\n    raise SystemExit(main(standalone_file=__file__))\n')
    text = "".join(parts)
    compile(text, STANDALONE_MODULE + ".py", "exec")  # fail here, not on the engine host
    return text


# -- start-up cost -------------------------------------------------------------------


def measure_cost(python: str | None = None, runs: int = 30) -> dict[str, float]:
    """Start-up time of ``python`` processing a site dir holding our ``.pth``
    versus an empty one, variable unset (min and median of ``runs``
    alternating starts, ms), plus what ``site`` spends on the file itself
    (``site.addpackage``, in-process, microseconds)."""
    python = python or sys.executable
    env = {k: v for k, v in os.environ.items() if k != ENV_INDEX_URL}
    times: dict[str, list[float]] = {"with": [], "without": []}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"with": Path(tmp, "with"), "without": Path(tmp, "without")}
        for d in dirs.values():
            d.mkdir()
        (dirs["with"] / PTH_NAME).write_text(pth_line(PACKAGE_MODULE))
        for _ in range(runs):
            for key, d in dirs.items():
                code = f"import site; site.addsitedir({str(d)!r})"
                t0 = time.perf_counter()
                subprocess.run([python, "-c", code], env=env, check=True)
                times[key].append((time.perf_counter() - t0) * 1000)
        # what site.py does with our file at each start (open, read, exec), timed
        # in-process: the start-up difference above is within process-start noise
        saved = os.environ.pop(ENV_INDEX_URL, None)
        try:
            n = 5_000
            t0 = time.perf_counter()
            for _ in range(n):
                site.addpackage(str(dirs["with"]), PTH_NAME, set())
            addpackage_us = (time.perf_counter() - t0) / n * 1e6
        finally:
            if saved is not None:
                os.environ[ENV_INDEX_URL] = saved
    return {
        "runs": runs,
        "with_min_ms": min(times["with"]),
        "without_min_ms": min(times["without"]),
        "delta_min_ms": min(times["with"]) - min(times["without"]),
        "delta_median_ms": statistics.median(times["with"]) - statistics.median(times["without"]),
        "pth_processing_us": addpackage_us,
    }


# -- command line ----------------------------------------------------------------------


def main(argv: list[str] | None = None, *, standalone_file: str | None = None) -> int:
    prog = "contextpilot_hooks.py" if standalone_file else "python -m contextpilot.install_hook"
    ap = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Install the contextpilot engine eviction hooks (a one-line .pth) into a Python "
            f"environment. They do nothing unless {ENV_INDEX_URL} is set when the engine starts."
        ),
    )
    ap.add_argument("--site", type=Path, help="site-packages directory (default: this interpreter's)")
    ap.add_argument("--uninstall", action="store_true", help="remove the hooks")
    if not standalone_file:
        ap.add_argument("--standalone", metavar="PATH", help="write the single-file variant to PATH and exit")
    ap.add_argument("--bench", action="store_true", help="measure the .pth start-up cost and exit")
    ap.add_argument("--runs", type=int, default=30, help="interpreter starts per side for --bench")
    args = ap.parse_args(argv)
    try:
        if getattr(args, "standalone", None):
            Path(args.standalone).write_text(assemble_standalone())
            print(f"wrote {args.standalone}; on the engine host: python {Path(args.standalone).name}")
            return 0
        if args.bench:
            r = measure_cost(runs=args.runs)
            print(
                f".pth cost with {ENV_INDEX_URL} unset: {r['delta_min_ms']:+.2f} ms "
                f"(min of {r['runs']} starts: {r['with_min_ms']:.2f} ms with, {r['without_min_ms']:.2f} ms "
                f"without; median delta {r['delta_median_ms']:+.2f} ms); site.py processing of the file: "
                f"{r['pth_processing_us']:.1f} us"
            )
            return 0
        if args.uninstall:
            removed = uninstall(args.site)
            print("removed " + (", ".join(map(str, removed)) if removed else "nothing (not installed)"))
            return 0
        pth = install(args.site, standalone_file)
        print(f"installed {pth}; enable per run with {ENV_INDEX_URL}=http://<contextpilot>:8765")
        return 0
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
