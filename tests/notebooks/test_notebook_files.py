"""The committed notebooks: one per workshop step with the page's number and name, no stray outputs."""

from __future__ import annotations

import nbformat
import pytest

from tests.notebooks.runner import NOTEBOOKS, ROOT, STEPS, has_exercise, is_checkpoint


def test_notebooks_and_workshop_pages_have_the_same_numbers_and_names():
    pages = sorted(p.stem for p in (ROOT / "workshop").glob("[0-9][0-9]_*.md"))
    assert sorted(p.stem for p in NOTEBOOKS) == pages == STEPS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_outputs_only_in_checked_cells(path):
    notebook = nbformat.read(path, as_version=4)
    stray = [
        (i, cell.execution_count, len(cell.outputs))
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        and "NBVAL_CHECK_OUTPUT" not in cell.source
        and (cell.outputs or cell.execution_count is not None)
    ]
    assert stray == [], f"run scripts/refresh_notebooks.py {path.relative_to(ROOT)}"
    checked = [c for c in notebook.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert all(c.outputs and c.execution_count for c in checked), "checked cells keep their output and count"
    assert "widgets" not in notebook.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_opens_with_its_page_and_has_an_exercise_and_a_checkpoint(path):
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].cell_type == "markdown" and f"../workshop/{path.stem}.md" in cells[0].source
    assert any("# Your turn" in c.source for c in cells if has_exercise(c)), "an exercise with a '# Your turn' hint"
    exercise = next(i for i, c in enumerate(cells) if has_exercise(c))
    assert any(is_checkpoint(c) for c in cells[exercise:]), "a checkpoint after the exercise"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_checkpoint_sits_right_after_its_exercise(path):
    """Every exercise is checked before the next one starts, at most a few code cells later (run it, call it)."""
    cells = nbformat.read(path, as_version=4).cells
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    exercises = [i for i in code if has_exercise(cells[i])]
    for exercise in exercises:
        after = [i for i in code if i > exercise]
        checkpoint = next((i for i in after if is_checkpoint(cells[i])), None)
        assert checkpoint is not None, f"cell {exercise}: no checkpoint after it"
        between = [i for i in after if i < checkpoint]
        assert not any(has_exercise(cells[i]) for i in between), f"cell {exercise}: another exercise before its check"
        assert len(between) <= 3, f"cell {exercise}: its checkpoint comes {len(between)} code cells later"
