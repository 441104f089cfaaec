"""Teaching helpers for the notebooks: the real code on screen, friendly checkpoints, learners' copies.

- :func:`show_source` displays a file of the kit, or one function, class or section of it, read from
  the source at the moment the cell runs: never a copy that can drift from the code.
- :func:`check` is what a checkpoint cell calls, once per part of the exercise: it prints a success
  message, or raises :class:`NotYet`, one line that names the part and gives a hint, graded: the first
  failure of a part gets a nudge, the next ones a pointer to the documentation or the kit's code (never
  the answer). A failure with another cause than the part's previous one starts again at the nudge.
  Jupyter shows that line alone, without a traceback.
- :func:`strip_solutions` and :func:`write_student_notebook` make the learners' copies
  (``make student``): every block between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in a code
  cell becomes one line ``...  # your code here`` at the block's indentation; the hint comments
  before the block stay. The cell stays valid Python, the names the solution defined stay undefined
  (or whatever the cell set before the block), so the checkpoint that reads them fails.

Nothing heavy at import (no torch, no IPython, no nbformat): each is imported where it is used.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "PLACEHOLDER",
    "NotYet",
    "ROOT",
    "Snippet",
    "check",
    "show_source",
    "source_of",
    "strip_solutions",
    "write_student_notebook",
]

#: The kit's source tree (the directory that holds ``yolo_service/``, ``frontend/``, ``notebooks/`` …).
ROOT = Path(__file__).resolve().parents[2]
BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
PLACEHOLDER = "...  # your code here"

_LANGUAGES = {
    ".py": "python",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".toml": "toml",
    ".json": "json",
    ".md": "markdown",
    ".sh": "bash",
    ".cfg": "ini",
    ".txt": "text",
}
_NAMED_LANGUAGES = {"Dockerfile": "docker", "Makefile": "make", ".dockerignore": "text"}


@dataclass(frozen=True)
class Snippet:
    """Lines ``first``–``last`` (1-based, inclusive) of ``path``, as shown by :func:`show_source`."""

    path: str
    first: int
    last: int
    text: str
    language: str

    @property
    def label(self) -> str:
        """Where the learner finds it: ``frontend/app.py, lines 30-33``."""
        return f"{self.path}, lines {self.first}-{self.last}"

    def __str__(self) -> str:
        return f"# {self.label}\n{self.text}"


def _language(path: Path) -> str:
    if path.name in _NAMED_LANGUAGES or path.name.endswith(".Dockerfile"):
        return _NAMED_LANGUAGES.get(path.name, "docker")
    return _LANGUAGES.get(path.suffix, "text")


def _find_definition(tree: ast.AST, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef:
    """The def/class ``qualname`` (``"create_app.predict"``, ``"Service.admit"``): nearest first."""
    node: ast.AST = tree
    found: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | None = None
    for part in qualname.split("."):
        found = next(
            (
                child
                for child in ast.walk(node)  # breadth first: the least nested definition wins
                if child is not node
                and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and child.name == part
            ),
            None,
        )
        if found is None:
            raise LookupError(f"no function or class {part!r} in {qualname!r}")
        node = found
    if found is None:  # an empty qualname
        raise LookupError("no name given")
    return found


def _block_end(lines: list[str], start: int) -> int:
    """The index after the block that starts at ``start``: the lines indented deeper than it."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # no trailing blank lines
        end -= 1
    return end


def _marker_line(lines: list[str], marker: str, after: int, path: str) -> int:
    for index in range(after, len(lines)):
        if marker in lines[index]:
            return index
    raise LookupError(f"{marker!r} is not in {path} (after line {after + 1})")


def source_of(
    target: str | Path | object, name: str | None = None, *, start: str | None = None, end: str | None = None
) -> Snippet:
    """The real source of ``target``, or of one part of it, as a :class:`Snippet`.

    Args:
        target: a path relative to the kit's root (``"frontend/app.py"``, ``"docker-compose.yml"``),
            an absolute path, or a Python function, class or module (found with :mod:`inspect`).
        name: a function or class in a Python file, dotted for nested ones (``"create_app.health"``);
            its decorators are included.
        start: the first line is the first one containing this text. Without ``end``, the section
            is that line and the lines indented deeper than it (a Python block, a YAML mapping).
        end: the last line is the first one containing this text, from ``start`` on.

    Raises:
        LookupError: the name or a marker is not in the file.
    """
    if not isinstance(target, str | Path):
        file = inspect.getsourcefile(target)  # type: ignore[arg-type]
        if file is None:
            raise LookupError(f"no source file for {target!r}")
        lines_of_object, first_line = inspect.getsourcelines(target)  # type: ignore[arg-type]
        path = Path(file).resolve()
        label = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        first = max(first_line, 1)
        text = textwrap.dedent("".join(lines_of_object)).rstrip("\n")
        return Snippet(label, first, first + len(lines_of_object) - 1, text, "python")

    path = Path(target) if Path(target).is_absolute() else ROOT / target
    label = str(target)
    lines = path.read_text(encoding="utf-8").splitlines()
    first, last = 0, len(lines)  # a slice: lines[first:last]
    if name is not None:
        node = _find_definition(ast.parse("\n".join(lines), filename=str(path)), name)
        decorators = [d.lineno for d in getattr(node, "decorator_list", [])]
        first, last = min([node.lineno, *decorators]) - 1, node.end_lineno or node.lineno
    if start is not None:
        first = _marker_line(lines, start, first, label)
        last = _marker_line(lines, end, first, label) + 1 if end is not None else _block_end(lines, first)
    elif end is not None:
        last = _marker_line(lines, end, first, label) + 1
    text = textwrap.dedent("\n".join(lines[first:last]))
    return Snippet(label, first + 1, last, text, _language(path))


def show_source(
    target: str | Path | object, name: str | None = None, *, start: str | None = None, end: str | None = None
) -> None:
    """Display the real source of ``target`` (see :func:`source_of`): highlighted in Jupyter, plain elsewhere."""
    snippet = source_of(target, name, start=start, end=end)
    try:
        from IPython import get_ipython
        from IPython.display import Code, Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with the notebooks extra
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(snippet)
        return
    display(Markdown(f"`{snippet.label}`"), Code(snippet.text, language=snippet.language))


class OneLine:
    """Mixed into an exception a learner meets in a notebook: shown as one red line, not a traceback.

    IPython shows an exception's ``_render_traceback_()`` instead of its traceback: the learner reads
    the line, not the frames of the helper that raised it.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\033[31m❌ {self}\033[0m"]


class NotYet(OneLine, AssertionError):
    """A checkpoint's part is not done yet: one line that says which, and what to try."""


#: Each part's last failure, in this kernel: its cause, and how many times in a row it failed so.
_failures: dict[str, tuple[str, int]] = {}
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")


def _one_line(exc: Exception) -> str:
    """An exception as one short line: pydantic's first error, else the last line of the message."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            return f"{'.'.join(str(part) for part in first['loc']) or 'the body'}: {first['msg']}"
        except Exception:  # not pydantic's errors(): fall back on the message
            pass
    if isinstance(exc, NameError) and getattr(exc, "name", None):
        return f"`{exc.name}` does not exist yet"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[-1] if lines else ''}"
    return text if len(text) <= 160 else text[:157] + "…"


def check(
    condition: bool | Callable[[], Any], success: str, hint: str | Sequence[str], *, part: str | None = None
) -> None:
    """One part of a checkpoint: print ``✅ success`` when ``condition`` holds, else raise :class:`NotYet`.

    Args:
        condition: the test, or a function that computes it (``lambda: ...``): an exception it raises
            (a ``NameError`` for a variable the exercise did not define yet, a validation error …)
            fails the part, with a one-line summary of it before the hint, instead of a traceback.
        success: what the learner got right, printed when it holds; it also names the part.
        hint: what to try, or hints from the gentlest to the most precise: the first failure of this
            part shows the first, each further failure with the same cause the next (the last one stays).
        part: what identifies the part from one run of the cell to the next; by default, the line that
            calls ``check`` (the texts may change between runs: a port picked fresh, a size).
    """
    if part is None:  # Jupyter names a cell's code after its text: the same cell run again, the same name
        caller = sys._getframe(1)
        part = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    if callable(condition):
        try:
            condition = condition()
        except Exception as exc:  # any failure of the learner's code means "not yet"
            _fail(part, hint, f" ({_one_line(exc)})")
    if not condition:
        _fail(part, hint, "")
    _failures.pop(part, None)
    print(f"✅ {success}")


def _fail(part: str, hint: str | Sequence[str], detail: str) -> NoReturn:
    """Raise the hint this part has earned: the next one on each failure with the same cause, then the last one.

    The cause is what the learner reads first, the detail and the nudge, with its numbers blanked: a port
    or a size picked fresh on each run is the same cause; another exception, or another answer quoted in
    the nudge, is a new one, and gets the nudge first.
    """
    hints = [hint] if isinstance(hint, str) else list(hint)
    cause = _NUMBERS.sub("#", f"{detail} {hints[0]}")
    last_cause, times = _failures.get(part, (cause, 0))
    times = times if last_cause == cause else 0
    grade = min(times, len(hints) - 1)
    _failures[part] = (cause, times + 1)
    more = " (stuck? run this cell again for a pointer)" if grade + 1 < len(hints) else ""
    raise NotYet(f"Not yet{detail}: {hints[grade]}{more}") from None


_SOLUTION = re.compile(
    rf"^(?P<indent>[ \t]*){re.escape(BEGIN_SOLUTION)}[^\n]*\n.*?^[ \t]*{re.escape(END_SOLUTION)}[^\n]*(?:\n|\Z)",
    re.MULTILINE | re.DOTALL,
)


def strip_solutions(source: str) -> str:
    """A cell's source with each solution block replaced by ``...  # your code here`` at its indentation.

    Raises:
        ValueError: a ``BEGIN`` marker without its ``END`` (or the reverse).
    """
    stripped = _SOLUTION.sub(lambda m: f"{m['indent']}{PLACEHOLDER}\n", source)
    if BEGIN_SOLUTION in stripped or END_SOLUTION in stripped:
        raise ValueError(f"unbalanced solution markers in:\n{source}")
    return stripped.removesuffix("\n") if not source.endswith("\n") else stripped


def write_student_notebook(source: Path, destination: Path) -> int:
    """Write the learners' copy of notebook ``source``: solutions stripped, no outputs; return the exercise count."""
    import nbformat

    notebook = nbformat.read(source, as_version=4)
    exercises = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        exercises += cell.source.count(BEGIN_SOLUTION)
        cell.source = strip_solutions(cell.source)
        cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    notebook.metadata.pop("widgets", None)
    destination.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, destination)
    return exercises
