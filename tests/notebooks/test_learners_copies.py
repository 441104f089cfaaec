"""No line of a solution shows anywhere in the learners' copies: not in the text, a hint, a comment or a checkpoint.

The solutions are the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in the instructors'
notebooks. Each is compared, whitespace normalized, with every cell of the learners' copy that
``make student`` writes (markdown and code): a solution line found there, even inside a longer line, is a
giveaway. Lines too general to give anything away (``pass``, ``...``, ``try:``, brackets) are left out.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from tests.notebooks.runner import NOTEBOOKS
from yolo_service.workshop.teaching import BEGIN_SOLUTION, END_SOLUTION, write_student_notebook

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
