"""Every exercise is checked: the learners' copy fails at its checkpoint, the instructors' copy passes.

The learners' copy is what ``make student`` writes (solutions replaced by ``...``). Run as handed
out, each of its checkpoint cells must fail with the checkpoint's ``NotYet`` (one line, no traceback) and no other
cell may fail: the failure comes from the checkpoint, not from an unrelated cell. The instructors'
copy (the committed notebook) must run with no error at all: nbval checks that in the README's test
command, so this file runs it only when nbval does not run the notebooks in the same session. Both must
leave no server process and no file behind (the kernel's working directory is an empty temporary directory).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notebooks.runner import (
    NOTEBOOKS,
    errors,
    has_exercise,
    is_checkpoint,
    left_running,
    run_notebook,
    run_tag,
    tagged_processes,
)
from yolo_service.workshop.teaching import PLACEHOLDER, write_student_notebook

pytestmark = [pytest.mark.slow]


def has_exercise_hint(cell):
    return cell.cell_type == "code" and "# Your turn" in cell.source


def summary(notebook, failed):
    return "\n\n".join(f"cell {i} ({name}: {message})\n{notebook.cells[i].source}" for i, name, message in failed)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_learners_copy_fails_at_its_checkpoints_only(path, tmp_path):
    student = tmp_path / "student" / path.name
    assert write_student_notebook(path, student) >= 1, f"{path.name} has no exercise"
    workdir = tmp_path / "work"
    workdir.mkdir()
    tag = run_tag()

    notebook = run_notebook(student, workdir)

    checkpoints = [i for i, cell in enumerate(notebook.cells) if is_checkpoint(cell)]
    failed = errors(notebook)
    assert checkpoints, f"{path.name} has no checkpoint cell (a code cell starting with '# Checkpoint')"
    assert [i for i, _, _ in failed if i not in checkpoints] == [], summary(notebook, failed)
    assert sorted({i for i, _, _ in failed}) == checkpoints, "every checkpoint must fail as handed out"
    # check() raises NotYet, "Not yet: <hint>", one line that Jupyter shows without a traceback.
    assert {(name, message.startswith("Not yet")) for _, name, message in failed} == {("NotYet", True)}
    assert all("\n" not in message for _, _, message in failed)
    shown = [o.traceback for i in checkpoints for o in notebook.cells[i].outputs if o.output_type == "error"]
    assert shown and all(len(lines) == 1 for lines in shown), "Jupyter shows the hint's line, not the frames"
    assert all(PLACEHOLDER in cell.source for cell in notebook.cells if has_exercise_hint(cell))
    assert left_running(notebook) == [], "the notebook must stop the servers it starts"
    assert tagged_processes(tag) == [], "the notebook left a process running"
    assert sorted(p.name for p in workdir.iterdir()) == [], "the notebook left files in its working directory"


def nbval_runs(config, notebook: Path) -> bool:
    """True when this pytest session also runs ``notebook`` under nbval (as the README's test command does)."""
    if not (config.getoption("nbval", False) or config.getoption("nbval_lax", False)):
        return False
    targets = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return any(target == notebook.resolve() or target in notebook.resolve().parents for target in targets)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_instructors_copy_passes_every_checkpoint(path, tmp_path, request):
    if nbval_runs(request.config, path):
        pytest.skip("nbval runs this notebook in this session already")
    tag = run_tag()

    notebook = run_notebook(path, tmp_path)

    assert errors(notebook) == [], summary(notebook, errors(notebook))
    assert any(has_exercise(cell) for cell in notebook.cells)
    checkpoint_outputs = [
        "".join(o.get("text", "") for o in cell.outputs) for cell in notebook.cells if is_checkpoint(cell)
    ]
    assert checkpoint_outputs and all("✅" in text for text in checkpoint_outputs), checkpoint_outputs
    assert left_running(notebook) == [], "the notebook must stop the servers it starts"
    assert tagged_processes(tag) == [], "the notebook left a process running"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "the notebook left files in its working directory"
