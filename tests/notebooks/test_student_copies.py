"""``make student`` never loses a learner's work: it writes missing copies only; a reset backs the old copy up.

The tests run the Makefile's own recipe (``make student``) into a temporary folder (``STUDENT_DIR``),
with this test's Python as the virtualenv's (``PY``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.helpers import ROOT
from tests.notebooks.runner import NOTEBOOKS, has_exercise
from yolo_service.workshop.teaching import PLACEHOLDER

MY_WORK = "# my own answer, typed in the lab\nanswer = 42"


def make_student(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    argv = ["make", "-s", "--no-print-directory", "student", f"PY={sys.executable}", f"STUDENT_DIR={out}", *options]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def work_on(copy: Path) -> None:
    """Do what a learner does: type into the exercise cell, save."""
    notebook = nbformat.read(copy, as_version=4)
    cell = next(cell for cell in notebook.cells if cell.cell_type == "code" and PLACEHOLDER in cell.source)
    cell.source = cell.source.replace(PLACEHOLDER, MY_WORK)
    nbformat.write(notebook, copy)


def has_my_work(copy: Path) -> bool:
    return any(MY_WORK in cell.source for cell in nbformat.read(copy, as_version=4).cells)


@pytest.fixture
def student(tmp_path: Path) -> Path:
    """A freshly made set of learners' copies."""
    out = tmp_path / "student"
    made = make_student(out)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    assert made.stdout.count(": written, ") == len(NOTEBOOKS), made.stdout
    return out


def test_the_copies_hold_no_solution(student):
    for source in NOTEBOOKS:
        instructors = [c for c in nbformat.read(source, as_version=4).cells if has_exercise(c)]
        learners = nbformat.read(student / source.name, as_version=4).cells
        assert instructors and not any(has_exercise(c) for c in learners), source.name
        assert sum(PLACEHOLDER in c.source for c in learners) >= len(instructors), source.name


def test_running_it_again_keeps_the_learners_work_and_writes_only_what_is_missing(student):
    work_on(student / "03_backend.ipynb")
    (student / "04_frontend.ipynb").unlink()

    again = make_student(student)

    assert again.returncode == 0, again.stderr
    assert has_my_work(student / "03_backend.ipynb")
    assert f"{student / '03_backend.ipynb'}: kept (your work; `make student RESET=03_backend`" in again.stdout
    assert again.stdout.count(": written, ") == 1 and f"{student / '04_frontend.ipynb'}: written" in again.stdout
    assert not (student / ".backup").exists()


def test_reset_starts_one_copy_again_and_backs_the_old_one_up(student):
    work_on(student / "03_backend.ipynb")
    work_on(student / "05_compose.ipynb")

    reset = make_student(student, "RESET=03_backend")

    assert reset.returncode == 0, reset.stderr
    assert not has_my_work(student / "03_backend.ipynb")  # as handed out again
    assert has_my_work(student / "05_compose.ipynb")  # the other copies are not touched
    (backup,) = (student / ".backup").iterdir()
    assert backup.name.startswith("03_backend.") and backup.suffix == ".ipynb"
    assert has_my_work(backup)
    assert f"your previous copy is in {backup}" in reset.stdout


def test_force_starts_every_copy_again_with_backups(student):
    for copy in student.glob("*.ipynb"):
        work_on(copy)

    forced = make_student(student, "FORCE=1")

    assert forced.returncode == 0, forced.stderr
    assert not any(has_my_work(copy) for copy in student.glob("*.ipynb"))
    backups = sorted((student / ".backup").iterdir())
    assert [b.name.split(".")[0] for b in backups] == [p.stem for p in NOTEBOOKS]
    assert all(has_my_work(b) for b in backups)
    # a second reset keeps the first backups, even within the same second
    for copy in student.glob("*.ipynb"):
        work_on(copy)
    assert make_student(student, "FORCE=1").returncode == 0
    assert len(list((student / ".backup").iterdir())) == 2 * len(NOTEBOOKS)


def test_force_0_and_an_unknown_reset_change_nothing(student):
    work_on(student / "03_backend.ipynb")
    assert make_student(student, "FORCE=0").returncode == 0
    assert has_my_work(student / "03_backend.ipynb")

    wrong = make_student(student, "RESET=03_backnd")

    assert wrong.returncode != 0
    assert "no notebook named 03_backnd; choose from 01_concepts, 02_setup, 03_backend" in wrong.stderr
    assert has_my_work(student / "03_backend.ipynb") and not (student / ".backup").exists()
