"""The import stack: attacks <- baselines <- bench <- reports <- bench/cli.py, with no cycle.

Every ``.py`` file of the four packages is parsed (never imported) with :mod:`ast`:

* no file imports a module of a higher layer, at any depth (inside functions and
  ``if TYPE_CHECKING:`` blocks too);
* the module-level imports among our modules form no cycle;
* only ``bench/cli.py``, the command line, imports ``argparse``.

``benchmarks/`` scripts are outside the package and exempt; nothing else is. (The learned baselines get the
harness's datasets through :func:`baselines.generators.set_training_source`, which :mod:`bench.data` calls,
and share its cache folder and atomic writes through :mod:`attacks.io`.)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("attacks", "baselines", "bench", "reports")
CLI = "bench.cli"
LAYERS = {"attacks": 0, "baselines": 1, "bench": 2, "reports": 3}


def _layer(module: str) -> int:
    return 4 if module == CLI or module.startswith(CLI + ".") else LAYERS[module.split(".")[0]]


def _modules() -> dict[str, Path]:
    """Every module of our packages: ``bench.store`` -> ``bench/store.py``; a package by its ``__init__.py``."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _imports(path: Path, module: str):
    """``(line, imported module, statement, module_level)`` for each import in ``path``.

    ``module_level`` is False inside a function or class body and inside ``if TYPE_CHECKING:``,
    which do not run when the module is imported. ``from package import name`` counts as an
    import of ``package.name`` when that is one of our modules.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append((child.lineno, alias.name, f"import {alias.name}", module_level))
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolve against this module's package
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                for alias in child.names:
                    statement = f"from {'.' * child.level}{child.module or ''} import {alias.name}"
                    target = f"{source}.{alias.name}"
                    found.append((child.lineno, target if target in MODULES else source, statement, module_level))
            visit(child, module_level and not isinstance(child, (
                ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
                and not _type_checking_block(child))

    visit(tree, True)
    return found


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _ours(name: str) -> str | None:
    """The module of ours that ``name`` (a dotted import) loads, or None for a third-party one."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


IMPORTS = {module: _imports(path, module) for module, path in MODULES.items()}


def _file(module: str) -> str:
    return MODULES[module].relative_to(ROOT).as_posix()


def _where(module: str, line: int) -> str:
    return f"{_file(module)}:{line}"


def test_every_package_is_seen():
    assert {m.split(".")[0] for m in MODULES} == set(PACKAGES)
    assert CLI in MODULES and "reports.gate" in MODULES


def test_no_import_of_a_higher_layer():
    """attacks=0 <- baselines=1 <- bench=2 <- reports=3 <- bench/cli.py=4; at any depth."""
    wrong = []
    for module, imports in IMPORTS.items():
        for line, name, statement, _ in imports:
            target = _ours(name)
            if target is not None and _layer(target) > _layer(module):
                wrong.append(f"{_where(module, line)}: `{statement}` (layer {_layer(module)} {module} imports "
                             f"layer {_layer(target)} {target})")
    assert not wrong, "imports against the stack attacks <- baselines <- bench <- reports <- bench/cli.py:\n" + \
        "\n".join(wrong)


def _cycles(graph: dict[str, dict[str, tuple[int, str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself): Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_no_import_cycle():
    """Among module-level imports of our modules (a package's ``__init__`` runs before its modules)."""
    graph: dict[str, dict[str, tuple[int, str]]] = {module: {} for module in MODULES}
    for module, imports in IMPORTS.items():
        for line, name, statement, module_level in imports:
            target = _ours(name)
            if module_level and target is not None and target != module:
                graph[module].setdefault(target, (line, statement))
    problems = []
    for component in _cycles(graph):
        members = set(component)
        edges = [f"  {_where(a, line)}: `{statement}` ({a} -> {b})"
                 for a in component for b, (line, statement) in graph[a].items() if b in members]
        problems.append(f"cycle among {', '.join(component)}:\n" + "\n".join(edges))
    assert not problems, "module-level import cycles:\n" + "\n".join(problems)


def test_cycle_finder_finds_cycles():
    graph = {"a": {"b": (1, "")}, "b": {"c": (1, "")}, "c": {"a": (1, "")}, "d": {"a": (1, "")}, "e": {"e": (1, "")}}
    assert _cycles(graph) == [["a", "b", "c"], ["e"]]


def test_only_the_command_line_imports_argparse():
    wrong = [f"{_where(module, line)}: `{statement}`" for module, imports in IMPORTS.items() if module != CLI
             for line, name, statement, _ in imports if name == "argparse" or name.startswith("argparse.")]
    assert not wrong, "argparse belongs to bench/cli.py alone:\n" + "\n".join(wrong)
