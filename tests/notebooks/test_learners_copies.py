"""No line of a solution shows anywhere in the learners' copies: not in the text, a hint, a comment or a checkpoint.

The solutions are the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in the instructors'
notebooks. Each is compared, whitespace normalized, with every cell of the learners' copy that
``make student`` writes (markdown and code): a solution line found there, even inside a longer line, is a
giveaway. Lines too general to give anything away (``pass``, ``...``, ``try:``, brackets) are left out.
"""

from __future__ import annotations

import ast
import re
import textwrap

import nbformat
import pytest

from tests.notebooks.runner import NOTEBOOKS, has_exercise, is_checkpoint
from yolo_service.workshop.teaching import BEGIN_SOLUTION, END_SOLUTION, strip_solutions, write_student_notebook

TRIVIAL = re.compile(r"(pass|\.\.\.|try:|else:|finally:|[\[\](){},;:]*)")


def normalized(text: str) -> str:
    """``text`` with every run of whitespace made one space, and no trailing ``;``."""
    return " ".join(text.split()).rstrip(";").strip()


def solution_lines(notebook: nbformat.NotebookNode) -> list[str]:
    """Every non-trivial line between the solution markers of the notebook's code cells, normalized."""
    lines = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        inside = False
        for line in cell.source.splitlines():
            if BEGIN_SOLUTION in line or END_SOLUTION in line:
                inside = BEGIN_SOLUTION in line
            elif inside and not TRIVIAL.fullmatch(normalized(line)):
                lines.append(normalized(line))
    return lines


def giveaways(solutions: list[str], notebook: nbformat.NotebookNode) -> list[str]:
    """The solution lines that show in some cell of ``notebook``: ``'cell N: line'``."""
    cells = [normalized(cell.source) for cell in notebook.cells]
    return [f"cell {i}: {line}" for line in solutions for i, text in enumerate(cells) if line in text]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_solution_line_shows_in_the_learners_copy(path, tmp_path):
    instructors = nbformat.read(path, as_version=4)
    solutions = solution_lines(instructors)
    assert solutions, f"{path.name}: an exercise with a solution"
    assert len(giveaways(solutions, instructors)) >= len(solutions)  # the search finds them where they are

    write_student_notebook(path, tmp_path / path.name)

    assert giveaways(solutions, nbformat.read(tmp_path / path.name, as_version=4)) == []


def test_a_solution_line_anywhere_in_the_copy_is_found_whitespace_aside():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            'x = 1\n### BEGIN SOLUTION\ntry:\n    port  =  bind(("127.0.0.1", 8000))\n### END SOLUTION'
        ),
        nbformat.v4.new_markdown_cell('Hint: `port = bind(("127.0.0.1",\n8000))` works.'),
        nbformat.v4.new_code_cell("check(ok, 'fine', 'the hint')"),
    ]
    solutions = solution_lines(notebook)
    assert solutions == ['port = bind(("127.0.0.1", 8000))']  # `try:` is too general to count
    assert giveaways(solutions, notebook) == [f"cell 0: {solutions[0]}", f"cell 1: {solutions[0]}"]


def solution_literals(source: str) -> set[str]:
    """The distinctive values a solution block writes: its string literals, and the attributes it reads or calls."""
    found: set[str] = set()
    for block in re.findall(
        rf"{re.escape(BEGIN_SOLUTION)}[^\n]*\n(.*?)^[ \t]*{re.escape(END_SOLUTION)}", source, re.S | re.M
    ):
        for node in ast.walk(ast.parse(textwrap.dedent(block))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) >= 3:
                found.add(node.value)
            elif isinstance(node, ast.Attribute) and len(node.attr) >= 3:
                found.add(node.attr)
    return found


def checkpoint_giveaways(notebook: nbformat.NotebookNode, copy: nbformat.NotebookNode) -> list[str]:
    """Solution values that a checkpoint cell of the learners' ``copy`` shows, and no cell before the exercise does.

    A value the text already gives (the model's name the task asks for, a key of the file shown) gives nothing
    away; one that appears first in the checking code (the restart policy to choose) does.
    """
    found = []
    for index, cell in enumerate(notebook.cells):
        if not has_exercise(cell):
            continue
        given = "\n".join(c.source for c in copy.cells[: index + 1])  # the text, the code and the task before it
        later = next((i for i in range(index + 1, len(copy.cells)) if has_exercise(notebook.cells[i])), len(copy.cells))
        for value in sorted(solution_literals(cell.source)):
            if re.search(rf"(?<!\w){re.escape(value)}(?!\w)", given):
                continue
            found += [
                f"cell {i}: {value!r}"
                for i in range(index + 1, later)
                if is_checkpoint(copy.cells[i]) and value in copy.cells[i].source
            ]
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_checkpoint_of_the_learners_copy_shows_a_solution_s_values(path, tmp_path):
    write_student_notebook(path, tmp_path / path.name)
    copy = nbformat.read(tmp_path / path.name, as_version=4)

    assert checkpoint_giveaways(nbformat.read(path, as_version=4), copy) == []


def test_a_checkpoint_comparing_with_the_answer_is_found_and_one_with_the_task_s_values_is_not():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("Change the frontend's ports to host port 8502, and choose a restart policy."),
        nbformat.v4.new_code_cell(
            '# Your turn\n### BEGIN SOLUTION\ncompose["ports"] = ["8502"]\ncompose["restart"] = "unless-stopped"\n'
            "### END SOLUTION"
        ),
        nbformat.v4.new_code_cell(
            '# Checkpoint\ncheck(compose["ports"] == ["8502"], "ok", "hint")\n'
            'check(compose["restart"] == "unless-stopped", "ok", "hint")'
        ),
    ]
    copy = nbformat.from_dict(notebook)
    copy.cells[1].source = strip_solutions(copy.cells[1].source)

    assert checkpoint_giveaways(notebook, copy) == ["cell 2: 'unless-stopped'"]
