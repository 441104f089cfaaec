"""The package's layers, read from the source (AST, nothing imported): who may import whom.

    core (config errors schema images drawing client shapes samples)
      ^ engines/          the detector's contract and the engines
      ^ models            the catalog and the registry
      ^ api metrics logs  serving
      ^ workshop/ cli     the workshop's helpers and the command line

Each layer imports only the layers below it. Every import counts for these rules, the ones inside
functions and under ``TYPE_CHECKING`` too. No import cycle may exist among the modules' own imports
at module level (the ones that run when a module is first imported).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "yolo_service"
CORE = ("config", "errors", "schema", "images", "drawing", "client", "shapes", "samples")
HEAVY = ("torch", "torchvision", "ultralytics", "openvino", "onnxruntime", "cv2")
SERVING = ("api", "metrics", "logs", "server")

SERVING_NAMES = tuple(f"yolo_service.{name}" for name in SERVING)
ABOVE_ENGINES = ("yolo_service.models", *SERVING_NAMES, "yolo_service.cli", "yolo_service.workshop")

#: module (or package, with its submodules) -> what it must never import, and why.
FORBIDDEN: dict[str, tuple[tuple[str, ...], str]] = {
    **{
        f"yolo_service.{name}": (
            (*HEAVY, "yolo_service.engines", *ABOVE_ENGINES),
            "the core is what the UI and the client run: no torch, no runtime, no engine, no serving, no helpers",
        )
        for name in CORE
    },
    "yolo_service.engines": (
        ABOVE_ENGINES,
        "the catalog imports the engines, never the reverse; engines know nothing of serving or the workshop",
    ),
    **{
        f"yolo_service.{name}": (
            ("yolo_service.workshop", "yolo_service.cli"),
            "the API never loads the workshop's helpers or the command line",
        )
        for name in SERVING
    },
}


@dataclass(frozen=True)
class Import:
    """One import statement of a module of the package."""

    source: str  # the importing module
    target: str  # the imported module (a name inside a module resolves to the module)
    line: int
    top_level: bool  # runs when ``source`` is first imported (not in a function, not under TYPE_CHECKING)

    def __str__(self) -> str:
        path = PACKAGE.parent / (self.source.replace(".", "/") + ".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        return f"{path.relative_to(ROOT)}:{self.line} imports {self.target}"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its ``__init__.py``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports of one module, relative ones resolved to absolute names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(module, alias.name, child.lineno, top_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:  # `from pkg import sub` imports the module pkg.sub
                    candidate = f"{base}.{alias.name}"
                    target = candidate if candidate in modules else base
                    found.append(Import(module, target, child.lineno, top_level))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)  # runs when called, not when imported
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for statement in child.body:  # read by the type checker only
                    visit(ast.Module([statement], []), False)
                for statement in child.orelse:
                    visit(ast.Module([statement], []), top_level)
            else:
                visit(child, top_level)

    visit(ast.parse(path.read_text(), str(path)), True)
    return found


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    modules = module_files()
    return [found for name, path in modules.items() for found in imports_of(name, path, modules)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_import_reader_sees_what_it_must(imports):
    """The reader resolves relative imports, names inside modules, and imports in functions (a sanity check)."""
    edges = {(i.source, i.target, i.top_level) for i in imports}
    assert ("yolo_service.models", "yolo_service.engines", True) in edges  # from .engines import ENGINES, …
    assert ("yolo_service.workshop.bench", "yolo_service.workshop.processes", True) in edges  # a sibling in workshop/
    assert ("yolo_service.workshop.bench", "yolo_service.engines.export", False) in edges  # in run_bench's pieces
    assert ("yolo_service.api", "yolo_service.logs", True) in edges  # from . import __version__, logs
    assert ("yolo_service.metrics", "yolo_service.models", False) in edges  # under TYPE_CHECKING


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_the_layers_below_it(imports, layer):
    forbidden, reason = FORBIDDEN[layer]
    offending = [
        str(i) for i in imports if _within(i.source, layer) and any(_within(i.target, name) for name in forbidden)
    ]
    assert not offending, f"{layer} must not import these ({reason}):\n" + "\n".join(offending)


def test_no_import_cycle_among_the_modules(imports):
    modules = set(module_files())
    graph: dict[str, list[Import]] = {name: [] for name in modules}
    for i in imports:
        if i.top_level and i.target in modules and i.target != i.source:
            graph[i.source].append(i)
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[Import] = []

    def cycle_from(name: str) -> list[Import] | None:
        state[name] = "open"
        for edge in graph[name]:
            path.append(edge)
            if state.get(edge.target) == "open":
                start = next(k for k, e in enumerate(path) if e.source == edge.target)
                return path[start:]
            if edge.target not in state and (found := cycle_from(edge.target)):
                return found
            path.pop()
        state[name] = "done"
        return None

    for name in sorted(modules):
        if name not in state and (cycle := cycle_from(name)):
            pytest.fail("import cycle:\n" + "\n".join(str(edge) for edge in cycle))


def test_the_readme_picture_names_every_module_and_subpackage():
    """The README's architecture picture shows the whole package: a new module must be drawn there too."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```text\nyolo_service/")
    picture = readme[start : readme.index("```", start + 3)]
    names = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        names.update(f"{part}/" for part in relative.parts[:-1])  # subpackages: engines/, workshop/
        if path.name != "__init__.py":
            names.add(path.name)
    missing = sorted(name for name in names if name not in picture)
    assert not missing, f"the README's architecture picture does not name: {', '.join(missing)}"
