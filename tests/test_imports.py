"""No import cycles inside the classanchor package (DESIGN.md: "No import circles").

The graph is read from the source with ``ast``, without importing anything. An edge ``a -> b`` is an
``import``/``from ... import`` in module ``a`` that names module ``b`` of the package:
- module-level imports, and imports inside functions and methods: a lazy import that only breaks a cycle
  at import time is still a cycle in the design, so it counts;
- not imports under ``if TYPE_CHECKING:`` (never executed; annotations only);
- ``from .pkg import name`` points to ``pkg.name`` when that is a submodule, else to ``pkg``; the implicit
  import of parent packages (``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``) is not an edge, or every
  module would close a cycle through ``classanchor/__init__.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path


PACKAGE = "classanchor"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def _modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package (``a/b/__init__.py`` is module ``a.b``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """The Import / ImportFrom nodes anywhere in the tree, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> set of package modules it imports (see the module docstring for what counts)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]  # the package relative imports start from
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                # "import classanchor.data.loader" names that module; stop at the deepest known one
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None; iterative three-colour DFS in sorted order."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return None


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b", "c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}) == ["b", "b2", "b"]


def test_import_graph_reads_relative_lazy_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nimport os\nfrom .. import a\n"
                                      "if TYPE_CHECKING:\n    from ..c import C\n")
    (pkg / "c.py").write_text("import pkg.sub.b\nfrom pkg.sub import nothing_here\n")
    graph = import_graph(_modules(pkg, "pkg"))
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.a"},
                     "pkg.c": {"pkg.sub.b", "pkg.sub"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]


# When written, two cycles closed through lazy (function-level) imports, in modules outside this test's
# author's files: data.augment -> data.preprocess -> data.augment, predictor -> user_data -> predictor.
def test_the_package_has_no_import_cycle():
    modules = _modules()
    assert f"{PACKAGE}.scores" in modules and len(modules) > 10
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, "import cycle (module-level or lazy imports): " + " -> ".join(cycle)
