"""The package layers of README's Layout section hold: no upward import, no circle (issue 27 item 5).

Every ``import`` / ``from ... import`` of ``espnet_omni`` counts, also inside a function or under
``TYPE_CHECKING``: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_layers(readme: Path) -> list[str]:
    m = re.search(r"<!-- layers: ([\w ]+) -->", readme.read_text())
    if m is None:
        raise AssertionError(f"{readme}: no '<!-- layers: ... -->' line in the Layout section")
    return m.group(1).split()


def module_imports(pkg_root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (``a.b`` for ``from a.b import c`` unless
    ``a.b.c`` is a module)."""
    name = pkg_root.name
    mods = {}
    for f in sorted(pkg_root.rglob("*.py")):
        parts = f.relative_to(pkg_root.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    out: dict[str, set[str]] = defaultdict(set)
    for mod, f in mods.items():
        for n in ast.walk(ast.parse(f.read_text(), str(f))):
            targets = []
            if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module and n.module.split(".")[0] == name:
                targets = [f"{n.module}.{a.name}" if f"{n.module}.{a.name}" in mods else n.module for a in n.names]
            elif isinstance(n, ast.Import):
                targets = [a.name for a in n.names if a.name.split(".")[0] == name]
            out[mod].update(t for t in targets if t in mods and t != mod)
    return out


def package_of(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(graph: dict[str, set[str]], layers: list[str]) -> list[str]:
    rank = {p: i for i, p in enumerate(layers)}
    return sorted(f"{a} -> {b}" for a, bs in graph.items() for b in bs
                  if package_of(a) and package_of(b) and package_of(a) != package_of(b)
                  and rank[package_of(b)] > rank[package_of(a)])


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    for root in sorted(set(graph) | {b for bs in graph.values() for b in bs}):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_every_package_has_one_layer():
    layers = readme_layers(ROOT / "README.md")
    packages = sorted(p.name for p in (ROOT / "espnet_omni").iterdir() if (p / "__init__.py").is_file())
    assert len(layers) == len(set(layers)), layers
    assert sorted(layers) == packages, f"README layers {layers} vs packages {packages}"


def test_no_upward_import():
    graph = module_imports(ROOT / "espnet_omni")
    assert upward_imports(graph, readme_layers(ROOT / "README.md")) == []


def test_no_circle():
    assert circles(module_imports(ROOT / "espnet_omni")) == []


def test_the_checks_find_an_upward_import_and_a_circle(tmp_path):
    """The checker on a made-up package: it must see what it is there to see."""
    pkg = tmp_path / "espnet_omni"
    for sub, src in {"low/__init__.py": "", "low/a.py": "def f():\n    from espnet_omni.high.b import g\n",
                     "high/__init__.py": "", "high/b.py": "from espnet_omni.low import a\n",
                     "high/c.py": "import espnet_omni.high.d\n", "high/d.py": "from espnet_omni.high import c\n"}.items():
        (pkg / sub).parent.mkdir(parents=True, exist_ok=True)
        (pkg / sub).write_text(src)
    (pkg / "__init__.py").write_text("")
    graph = module_imports(pkg)
    assert upward_imports(graph, ["low", "high"]) == ["espnet_omni.low.a -> espnet_omni.high.b"]
    assert sorted(circles(graph)) == [["espnet_omni.high.b", "espnet_omni.low.a"],
                                      ["espnet_omni.high.c", "espnet_omni.high.d"]]
    with pytest.raises(AssertionError, match="no '<!-- layers"):
        readme_layers(pkg / "__init__.py")
