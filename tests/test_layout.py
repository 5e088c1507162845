"""The package's shape, checked: no import circles, the shell on top, a docstring on every
folder, every exception in ``gateway/errors.py``.

The import graph is read from the source (an AST walk over every ``import`` and ``from …
import``, those inside functions and ``TYPE_CHECKING`` blocks included), so a circle fails here
before it fails at import time in some order nobody tried.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import gateway

PACKAGE = Path(gateway.__file__).resolve().parent
#: The shell: what assembles and runs processes. Nothing below it may import it.
SHELL = ("gateway.app", "gateway.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    """Every module of the package that ``path`` imports (a name imported from a package is
    the submodule when there is one, else the package)."""

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            target = resolve(name)
            if target is not None:
                yield target


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for target in imported(path, known) if target != name}
        for name, path in known.items()
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 80  # the walk saw the package
    assert cycles(graph) == []


def test_the_shell_is_on_top() -> None:
    # app/ (the composition root, lifecycles) and cli/ (argument parsing) assemble the
    # domains; a domain that imported them would pull the whole process in.
    inward = sorted(
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        if not name.startswith(SHELL)
        for target in targets
        if target.startswith(SHELL)
    )
    assert inward == []


def test_every_folder_says_what_it_holds() -> None:
    folders = [path.parent for path in PACKAGE.rglob("*.py")]
    for folder in sorted(set(folders)):
        init = folder / "__init__.py"
        assert init.exists(), f"{folder} has no __init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert docstring, f"{init} has no docstring"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_exception_is_defined_in_errors() -> None:
    elsewhere = []
    for info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
                and info.name != "gateway.errors"
            ):
                elsewhere.append(f"{info.name}.{name}")
    assert elsewhere == []


def test_the_build_sees_every_runtime_dependency() -> None:
    # mypyc type-checks the modules it compiles against the build environment (setup.py):
    # a dependency missing there would be compiled as Any, or fail the build.
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    build = set(project["build-system"]["requires"])
    assert set(project["project"]["dependencies"]) <= build
    assert {"types-PyYAML", "mypy>=2.4,<3"} <= build
