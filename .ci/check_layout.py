"""Two rules of the house that `make lint` keeps: no Python file outside tests/ over
MAX_LINES lines, and no import cycle among the project's own modules.

    python .ci/check_layout.py            # exit 1 and list what breaks a rule

Imports are read from the source (``ast``), function-level ones included: a cycle
broken only by importing inside a function is still two modules that need each
other. ``if TYPE_CHECKING:`` imports are left out (they never run).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
# Where each first-party package's files live (pyproject's package-dir).
PACKAGE_DIRS = {
    "genarm.server": "server",
    "genarm.arm_kernels": "arm_kernels",
    "genarm.clients": "clients",
    "genarm": "genarm",
    "benchmarks": "benchmarks",
}
SKIP_DIRS = {".venv", ".venv-guidellm", ".git", "build", "tests", "node_modules"}


def python_files() -> list[Path]:
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if not SKIP_DIRS.intersection(path.relative_to(ROOT).parts)
        and not any(part.endswith(".egg-info") for part in path.parts)
    )


def long_files(files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            problems.append(f"{path.relative_to(ROOT)}: {n} lines (at most {MAX_LINES})")
    return problems


def module_name(path: Path) -> str | None:
    """The import name of a first-party file, or None (a script outside the packages)."""
    rel = path.relative_to(ROOT).with_suffix("")
    for package, folder in sorted(PACKAGE_DIRS.items(), key=lambda kv: -len(kv[1])):
        if rel.parts[0] == folder:
            parts = [*package.split("."), *rel.parts[1:]]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement in ``tree`` may refer to."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return names


def import_graph(files: list[Path]) -> dict[str, set[str]]:
    modules = {name: path for path in files if (name := module_name(path))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = imported_names(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
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
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _is_package_init(name: str, graph: dict[str, set[str]]) -> bool:
    return any(other.startswith(name + ".") for other in graph)


def main() -> int:
    files = python_files()
    problems = long_files(files)
    graph = import_graph(files)
    # A package's __init__ re-exporting its modules is not a cycle between modules:
    # drop edges from a package to its own sub-modules.
    graph = {
        name: {t for t in targets if not t.startswith(name + ".")}
        if _is_package_init(name, graph)
        else targets
        for name, targets in graph.items()
    }
    for component in cycles(graph):
        problems.append("import cycle: " + " <-> ".join(component))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} layout problem(s); see .ci/check_layout.py for the rules")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
