"""The Python layer's shape: one-way imports, no reaching into other modules' privates, small
classes and functions. Read from the source with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import koemorph_data

PACKAGE = Path(koemorph_data.__file__).parent
NAME = "koemorph_data"
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([NAME, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every import statement, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported package module, name taken from it or None)}."""
    edges: dict[str, set[tuple[str, str | None]]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(NAME):
                        edges[module].add((alias.name, None))
                continue
            source = _resolve(module, path, node)
            if not source.startswith(NAME):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules or alias.name == "_core":
                    edges[module].add((submodule, None))
                else:
                    edges[module].add((source, alias.name))
    return edges


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {
        m: {target for target, _ in targets if target in modules and target != m}
        for m, targets in _imports(modules).items()
    }
    # The package's __init__ imports its modules by design; a cycle through it is still a cycle
    # for a module that imports the package root, so keep it in the graph.
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_module_imports_another_modules_private_names() -> None:
    modules = _modules()
    offenders = []
    for module, targets in _imports(modules).items():
        for source, name in targets:
            if name is not None and name.startswith("_") and not name.startswith("__"):
                offenders.append(f"{module} imports {name} from {source}")
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        module_names = {
            alias.asname or alias.name
            for node in _import_nodes(tree)
            if isinstance(node, ast.ImportFrom) and _resolve(module, path, node).startswith(NAME)
            for alias in node.names
            if f"{_resolve(module, path, node)}.{alias.name}" in modules
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_names
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(f"{module}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert offenders == []


def test_classes_and_functions_stay_small() -> None:
    too_long = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            limit = (
                MAX_CLASS_LINES
                if isinstance(node, ast.ClassDef)
                else MAX_FUNCTION_LINES
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                else None
            )
            if limit is not None and node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines (limit {limit})")
    assert too_long == []


def test_importing_the_package_runs_at_runtime() -> None:
    """``import koemorph_data`` in a fresh interpreter (a cycle the static walk missed, e.g.
    through importlib, shows up as an ImportError here)."""
    code = "import koemorph_data, koemorph_data.cli, koemorph_data.loader"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_detector_finds_a_cycle_and_a_private_import(tmp_path, monkeypatch) -> None:
    """The checks above can fail: a fake package with a cycle and a private import."""
    fake = tmp_path / NAME
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "a.py").write_text("from .b import thing\n")
    (fake / "b.py").write_text("from .a import _hidden\nthing = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    modules = _modules()
    edges = _imports(modules)
    assert (f"{NAME}.b", "thing") in edges[f"{NAME}.a"] and (f"{NAME}.a", "_hidden") in edges[f"{NAME}.b"]
    try:
        test_no_import_cycles()
    except AssertionError:
        pass
    else:
        raise AssertionError("the cycle a -> b -> a was not found")
    try:
        test_no_module_imports_another_modules_private_names()
    except AssertionError:
        pass
    else:
        raise AssertionError("the private import was not found")
