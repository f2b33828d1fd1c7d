"""The package's import graph, read from the source with ``ast``.

Every import counts, wherever it sits (module level, inside a function, or
under ``TYPE_CHECKING``): a cycle hidden in a function is still a cycle a
reader has to untangle. The checks are structural, so each one is shown to
fail on a small synthetic package first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "contextpilot"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root``."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(mod: str, level: int, current: str, is_pkg: bool) -> str:
    if not level:
        return mod
    base = current.split(".") if is_pkg else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, mod] if mod else base)


def imports(root: Path) -> dict[str, set[tuple[str, str | None]]]:
    """Module -> set of (imported module, imported name or None), inside the package only."""
    mods = module_names(root)
    top = root.name
    out: dict[str, set[tuple[str, str | None]]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == top:
                        out[mod].add((a.name, None))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(node.module or "", node.level, mod, is_pkg)
                if target.split(".")[0] != top:
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    # ``from pkg import submodule`` imports the submodule
                    out[mod].add((sub, None) if sub in mods else (target, a.name))
    return out


def graph(root: Path) -> dict[str, set[str]]:
    mods = module_names(root)
    return {m: {t for t, _ in deps if t in mods and t != m} for m, deps in imports(root).items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(g):
        if start in index:
            continue
        work = [(start, iter(sorted(g[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(g.get(nxt, ())))))
                elif nxt in on_stack:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "pkg"


def test_cycle_detector_finds_cycles_in_functions_and_type_checking(tmp_path: Path) -> None:
    pkg = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import x\n",
            "pkg/b.py": "def f():\n    from pkg import c\n",
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n",
            "pkg/d.py": "import pkg.a\n",
        },
    )
    assert cycles(graph(pkg)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_import_cycles() -> None:
    found = cycles(graph(ROOT))
    assert not found, f"import cycles: {found}"


@pytest.mark.parametrize("name", ["contextpilot.core.chat", "contextpilot.distributed.ray_data"])
def test_former_cycles_are_gone(name: str) -> None:
    g = graph(ROOT)
    assert name in g
    assert not any(name in c for c in cycles(g))


#: private names one module may still import from another (none left)
PRIVATE_IMPORTS_ALLOWED: set[tuple[str, str, str]] = set()


def private_imports(root: Path) -> set[tuple[str, str, str]]:
    """(importer, module, name) for every ``_name`` imported from another module."""
    return {
        (mod, target, name)
        for mod, deps in imports(root).items()
        for target, name in deps
        if name and name.startswith("_") and not name.startswith("__") and target != mod
    }


def test_private_import_detector(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "_x = 1\n", "pkg/b.py": "from .a import _x\n"})
    assert private_imports(pkg) == {("pkg.b", "pkg.a", "_x")}


def test_no_private_name_imported_across_modules() -> None:
    found = private_imports(ROOT) - PRIVATE_IMPORTS_ALLOWED
    assert not found, f"private names imported across modules: {sorted(found)}"


def test_snapshot_touches_no_private_attribute() -> None:
    """The stores own their state: snapshots go through their export()/load()."""
    path = ROOT / "core" / "snapshot.py"
    tree = ast.parse(path.read_text())
    touched = sorted(
        ast.unparse(n)
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
    )
    assert not touched, touched


# -- layers (docs/architecture.md) ---------------------------------------------------

#: package -> what it may import from this project; ``"contextpilot"`` alone means
#: the package top (its public names), any other entry also covers its submodules
ALLOWED: dict[str, set[str]] = {
    "contextpilot": {"contextpilot.core"},
    "contextpilot.core": {"contextpilot.core"},
    "contextpilot.client": {"contextpilot.client"},
    "contextpilot.sim": {"contextpilot.core", "contextpilot.sim"},
    "contextpilot.distributed": {"contextpilot.core", "contextpilot.distributed"},
    "contextpilot.hooks": {"contextpilot.core.ids", "contextpilot.hooks"},
    "contextpilot.server": {
        "contextpilot",
        "contextpilot.core",
        "contextpilot.sim",
        "contextpilot.client",
        "contextpilot.server",
    },
    "contextpilot.llamacpp": {
        "contextpilot.core.ids",
        "contextpilot.hooks.notifier",
        "contextpilot.server.engine_client",
        "contextpilot.llamacpp",
    },
    "contextpilot.bench": {
        "contextpilot",
        "contextpilot.core",
        "contextpilot.sim",
        "contextpilot.distributed",
        "contextpilot.server",
        "contextpilot.bench",
    },
    "contextpilot.plugins": {
        "contextpilot",
        "contextpilot.core",
        "contextpilot.client",
        "contextpilot.sim",
        "contextpilot.bench",
        "contextpilot.plugins",
    },
    "contextpilot.plugin_planner": {"contextpilot.plugins"},
    "contextpilot.install_hook": {"contextpilot.hooks"},
    "contextpilot.cli": {"contextpilot.bench", "contextpilot.server"},
}

#: third-party packages a layer must never import (anywhere in its files)
FORBIDDEN_EXTERNAL = {
    "contextpilot.core": {"fastapi", "starlette", "httpx", "pydantic", "uvicorn", "prometheus_client", "ray"},
    "contextpilot.hooks": {"numpy", "scipy", "numba", "fastapi", "starlette", "httpx", "pydantic", "uvicorn"},
    "contextpilot.client": {"fastapi", "starlette", "uvicorn", "numpy", "scipy", "numba"},
}


def package_of(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2])


def allowed(target: str, rules: set[str]) -> bool:
    return any(target == a or (a != "contextpilot" and target.startswith(a + ".")) for a in rules)


def layer_violations(root: Path, rules: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in sorted(imports(root).items()):
        pkg = package_of(mod)
        for target, _ in sorted(deps, key=str):
            if pkg not in rules:
                out.append(f"{mod}: package {pkg} has no layer rule")
            elif not allowed(target, rules[pkg]):
                out.append(f"{mod} imports {target}")
    return out


def external_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_layer_checker_flags_an_upward_import(tmp_path: Path) -> None:
    pkg = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/core/__init__.py": "",
            "pkg/core/a.py": "from pkg.server.b import x\n",
            "pkg/server/__init__.py": "",
            "pkg/server/b.py": "from pkg.core.a import y\n",
        },
    )
    rules = {"pkg": set(), "pkg.core": {"pkg.core"}, "pkg.server": {"pkg.core", "pkg.server"}}
    assert layer_violations(pkg, rules) == ["pkg.core.a imports pkg.server.b"]


def test_every_package_imports_only_the_layers_below_it() -> None:
    found = layer_violations(ROOT, ALLOWED)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("package", sorted(FORBIDDEN_EXTERNAL))
def test_low_layers_import_no_http_or_heavy_libraries(package: str) -> None:
    mods = module_names(ROOT)
    files = [p for m, p in mods.items() if m == package or m.startswith(package + ".")]
    assert files
    bad = {str(p.relative_to(ROOT)): external_imports(p) & FORBIDDEN_EXTERNAL[package] for p in files}
    assert not {k: v for k, v in bad.items() if v}
