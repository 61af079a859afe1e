"""The package's layers (`partrobust.LAYERS`): data flows downward only, no import circles, no hidden imports.

Every import statement of every module under ``lib/partrobust`` is read with `ast` (function-level
and ``TYPE_CHECKING`` imports included) and resolved to the package's modules, so the rule holds
for what the code says, not only for what one run happens to import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import partrobust
from partrobust import ENTRY_POINTS, LAYERS

PACKAGE = Path(partrobust.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> list[tuple[str, int, bool]]:
    """(imported module of the package, line, inside a function) for each import of module `name`."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nested = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target in MODULES and target != name:
                found.append((target, node.lineno, id(node) in nested))
    return found


def _layer(name: str) -> tuple[int, str]:
    """(rank, layer name) of a module; entry points rank above every layer, the package root below."""
    parts = name.split(".")
    if len(parts) == 1:
        return -1, "partrobust"
    if len(parts) == 2 and parts[1] in ENTRY_POINTS:
        return len(LAYERS), "entry"
    for rank, siblings in enumerate(LAYERS):
        if parts[1] in siblings:
            return rank, parts[1]
    raise AssertionError(f"{name} belongs to no layer of partrobust.LAYERS: add its subpackage there")


GRAPH = {name: _imports(name) for name in MODULES}


def test_every_module_belongs_to_a_layer_and_every_subpackage_is_listed():
    for name in MODULES:
        _layer(name)
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == {layer for siblings in LAYERS for layer in siblings}


def test_no_layer_imports_a_higher_one_or_a_sibling():
    wrong = []
    for name, imports in GRAPH.items():
        rank, layer = _layer(name)
        for target, line, _ in imports:
            target_rank, target_layer = _layer(target)
            if target_rank > rank or (target_rank == rank and target_layer != layer):
                wrong.append(f"{MODULES[name].relative_to(PACKAGE)}:{line}: {layer} imports {target} ({target_layer})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_nothing_inside_the_package_imports_the_entry_point_aliases():
    users = [f"{name} -> {target}" for name, imports in GRAPH.items() for target, _, _ in imports
             if _layer(target)[1] == "entry"]
    assert not users, users


def test_no_hidden_imports_inside_functions():
    hidden = [f"{MODULES[name].relative_to(PACKAGE)}:{line}: imports {target}" for name, imports in GRAPH.items()
              for target, line, nested in imports if nested]
    assert not hidden, "imports of the package inside functions (move them to the top):\n" + "\n".join(hidden)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    graph = {name: {t for t, _, _ in imports} for name, imports in GRAPH.items()}
    assert _cycles(graph) == []


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The rule's test can fail: a made-up circle and a made-up upward import are caught."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _layer("partrobust.core.config")[0] < _layer("partrobust.runs.run")[0]
    assert _layer("partrobust.train.loop")[0] == _layer("partrobust.eval.evaluators")[0]
    with pytest.raises(AssertionError, match="no layer"):
        _layer("partrobust.nowhere.module")


def test_every_module_is_committed_not_ignored():
    """A module that git ignores is missing from every fresh clone (a `runs/` pattern once hid the runs layer)."""
    import subprocess

    root = PACKAGE.parents[1]
    listed = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--", str(PACKAGE)],
                            cwd=root, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    ignored = [line for line in listed.stdout.splitlines() if line.endswith(".py")]
    assert not ignored, f"modules ignored by .gitignore (a clone would lack them): {ignored}"
