"""The package's architecture (docs/architecture.md), checked on the source with ``ast``.

Every ``import`` of every module counts: top-level, inside functions, under ``if TYPE_CHECKING:``
and relative ones. Rules: no import cycle; a module imports only from its own stage package or a
lower stage (STAGES); nothing under pam_explorer/ imports streamlit or the dashboard (ui). The same
checker runs on the real package and on a synthetic module set with known faults. The layout tree
of docs/architecture.md lists every module in its stage package's rows, and no module that is gone.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

PACKAGE = "pam_explorer"
ROOT = Path(__file__).resolve().parents[1]
# Stage order, lowest first; packages on one line share a stage and may not import each other.
STAGES: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("data", "zoo", "cost"),
    ("graph",),
    ("regroup",),
    ("merge",),
    ("train",),
    ("prune", "baselines"),
    ("export",),
    ("runs",),
    ("cli",),
)
FACADE = {PACKAGE, f"{PACKAGE}.__main__"}  # the public API and ``python -m``: above every stage
FORBIDDEN = ("streamlit", "ui")  # the dashboard sits on top of the package, never inside it


# --------------------------------------------------------------------------- the checker
def module_name(path: str) -> tuple[str, bool]:
    """("pam_explorer.core.io", False) for "pam_explorer/core/io.py"; packages end in __init__."""
    parts = path[:-len(".py")].split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imports_of(name: str, is_package: bool, source: str, modules: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) of every import in ``source``; ``from X import a`` names the
    module X.a when that is a module, else X. Relative imports are resolved against ``name``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub if sub in modules else base, node.lineno))
    return out


def stage_of(module: str) -> tuple[int, str] | None:
    """(stage rank, stage package) of a package module; the facade ranks above every stage."""
    if module in FACADE:
        return len(STAGES), PACKAGE
    package = module.split(".")[1]
    for rank, packages in enumerate(STAGES):
        if package in packages:
            return rank, package
    return None


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, first == last) per strongly connected component with a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; module graphs are small, recursion depth is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(graph, set(comp)) for comp in components]


def _cycle_in(graph: Mapping[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the smallest module of a strongly connected component (BFS)."""
    start = min(comp)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            if start in graph.get(v, ()):  # v closes the cycle: walk back to start
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            for w in sorted(graph.get(v, ())):
                if w in comp and w not in parent and w != start:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")


def check_architecture(files: Mapping[str, str]) -> list[str]:
    """Problems of a module set {"pam_explorer/x/y.py": source}: cycles, imports of a later stage
    or of another package of the same stage, streamlit/ui imports, modules outside every stage."""
    names = {path: module_name(path) for path in files}
    modules = {name for name, _ in names.values()}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    problems = []
    for path, source in sorted(files.items()):
        name, is_package = names[path]
        here = stage_of(name)
        if here is None:
            problems.append(f"{name}: not in any stage of STAGES")
            continue
        for target, line in imports_of(name, is_package, source, modules):
            if target.split(".")[0] in FORBIDDEN:
                problems.append(f"{path}:{line}: imports {target} (the package never imports the dashboard)")
            if target.split(".")[0] != PACKAGE:
                continue
            graph[name].add(target)
            there = stage_of(target)
            if there is not None and there[1] != here[1] and there[0] >= here[0]:
                problems.append(f"{path}:{line}: {name} (stage {here[0]} {here[1]}) imports {target} "
                                f"(stage {there[0]} {there[1]}): only the own package or lower stages")
    problems += ["import cycle: " + " -> ".join(cycle) for cycle in find_cycles(graph)]
    return problems


def documented_modules(doc: str) -> dict[str, set[str]]:
    """{stage package ("" = the package itself): module file names ("x.py") in its rows of the
    layout tree} of architecture.md: a row "  name/ ..." opens a package's rows (continued by
    deeper-indented lines), "  file.py ..." is the package itself, a line at column 0 neither."""
    tree = doc.split("```")[1]
    out: dict[str, set[str]] = {}
    current: str | None = None
    for line in tree.splitlines():
        if (head := re.match(r"  (\w+)/\s", line)) is not None:
            current = head.group(1)
        elif re.match(r"  \S", line):
            current = ""
        elif re.match(r"\S", line):
            current = None
        if current is not None:
            out.setdefault(current, set()).update(re.findall(r"\b(\w+\.py)\b", line))
    return out


def undocumented(files: Mapping[str, str], listed: Mapping[str, set[str]]) -> tuple[list[str], list[str]]:
    """(modules of ``files`` not in their package's rows, listed names that are no module)."""
    have: dict[str, set[str]] = {}
    for path in files:
        parts = path.split("/")[1:]
        package, name = (parts[0], parts[-1]) if len(parts) > 1 else ("", parts[0])
        have.setdefault(package, set()).add(name)
    missing = sorted(f"{p}/{n}".lstrip("/") for p, names in have.items() for n in names
                     if not (n == "__init__.py" and p) and n not in listed.get(p, set()))
    gone = sorted(f"{p}/{n}".lstrip("/") for p, names in listed.items() for n in names
                  if n not in have.get(p, set()))
    return missing, gone


def package_files(root: Path = ROOT) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted((root / PACKAGE).rglob("*.py"))}


# --------------------------------------------------------------------------- the tests
def test_the_package_follows_the_stage_order_without_cycles():
    files = package_files()
    assert len(files) > 40 and f"{PACKAGE}/core/subsets.py" in files
    problems = check_architecture(files)
    assert not problems, "\n".join(problems)


def test_the_architecture_doc_lists_every_module():
    listed = documented_modules((ROOT / "docs" / "architecture.md").read_text())
    missing, gone = undocumented(package_files(), listed)
    assert not missing, f"modules missing from the layout tree of docs/architecture.md: {missing}"
    assert not gone, f"docs/architecture.md lists modules that do not exist: {gone}"


def test_the_doc_check_finds_a_missing_and_a_stale_module():
    doc = ("```\npam_explorer/\n  __init__.py     facade\n  core/      0    a.py    x\n"
           "                  b.py (y), old.py\n  zoo/       1    c.py\nui/  10\n```\n")
    files = {f"pam_explorer/{f}": "" for f in ("__init__.py", "__main__.py", "core/__init__.py", "core/a.py",
                                              "core/b.py", "zoo/c.py", "zoo/d.py")}
    assert documented_modules(doc) == {"": {"__init__.py"}, "core": {"a.py", "b.py", "old.py"},
                                       "zoo": {"c.py"}}
    assert undocumented(files, documented_modules(doc)) == (["__main__.py", "zoo/d.py"], ["core/old.py"])


def test_every_stage_package_exists():
    for packages in STAGES:
        for package in packages:
            assert (ROOT / PACKAGE / package / "__init__.py").is_file(), package


SYNTHETIC = {
    "pam_explorer/__init__.py": "from pam_explorer.merge.net import Net\n",
    "pam_explorer/core/__init__.py": "",
    "pam_explorer/core/a.py": "from pam_explorer.core import b\n",
    "pam_explorer/core/b.py": "def f():\n    from pam_explorer.core.c import g\n    return g\n",
    "pam_explorer/core/c.py": "from .a import x  # relative: closes the circle a -> b -> c -> a\n",
    "pam_explorer/core/typed.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from pam_explorer.merge.net import Net\n"),
    "pam_explorer/merge/__init__.py": "",
    "pam_explorer/merge/net.py": "import torch\nfrom pam_explorer.core.typed import T\n",
    "pam_explorer/data/__init__.py": "",
    "pam_explorer/data/side.py": "from ..zoo import chain\n",
    "pam_explorer/zoo/__init__.py": "",
    "pam_explorer/zoo/chain.py": "",
    "pam_explorer/cost/__init__.py": "",
    "pam_explorer/cost/page.py": "import streamlit as st\nfrom ui.state import x\n",
    "pam_explorer/extra/__init__.py": "",
}


def test_the_checker_reports_a_cycle_an_upward_import_and_streamlit():
    problems = check_architecture(SYNTHETIC)
    text = "\n".join(problems)
    cycles = [p for p in problems if p.startswith("import cycle")]
    assert "import cycle: pam_explorer.core.a -> pam_explorer.core.b -> pam_explorer.core.c -> " \
           "pam_explorer.core.a" in cycles
    # TYPE_CHECKING import of a later stage: upward, and it closes a second cycle with merge.net
    assert any("core/typed.py:3" in p and "imports pam_explorer.merge.net" in p for p in problems), text
    assert any("pam_explorer.core.typed" in c and "pam_explorer.merge.net" in c for c in cycles), text
    # relative import of another package of the same stage
    assert any("data/side.py:1" in p and "imports pam_explorer.zoo.chain" in p for p in problems), text
    assert any("cost/page.py:1: imports streamlit" in p for p in problems), text
    assert any("cost/page.py:2: imports ui.state" in p for p in problems), text
    assert "pam_explorer.extra: not in any stage" in text
    assert len(problems) == 7, text  # nothing else: the facade may import any stage


def test_the_checker_accepts_a_clean_module_set():
    faulty = ("pam_explorer/extra", "pam_explorer/data", "pam_explorer/cost")
    clean = {k: v for k, v in SYNTHETIC.items() if not k.startswith(faulty)}
    clean["pam_explorer/core/c.py"] = "import math\n"
    clean["pam_explorer/core/typed.py"] = "from pam_explorer.core import a, b\n"
    assert check_architecture(clean) == []
