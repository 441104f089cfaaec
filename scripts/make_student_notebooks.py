"""Write the learners' copies of the notebooks into ``student/`` (``make student``; gitignored).

The committed notebooks are the instructors' versions. In the learners' copies each block between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes ``...  # your code here`` (the hint comments
above it stay) and every output is removed, so each checkpoint fails until the learner does the
exercise. Never edit the copies by hand: edit the notebook and run this again.

    .venv/bin/python scripts/make_student_notebooks.py [NOTEBOOK ...] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from yolo_service.workshop.teaching import ROOT, write_student_notebook


def main(argv: list[str] | None = None) -> int:
    """Write ``student/NN_name.ipynb`` for every notebook (or the ones given)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "student", help="default: student/")
    args = parser.parse_args(argv)
    for source in args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")):
        destination = args.out / source.name
        exercises = write_student_notebook(source, destination)
        print(f"{destination}: {exercises} exercise{'s' * (exercises != 1)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
