"""Write the learners' copies of the notebooks into ``student/`` (``make student``; gitignored).

The committed notebooks are the instructors' versions. In the learners' copies each block between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes ``...  # your code here`` and every output is
removed, so each checkpoint fails until the learner does the exercise. Never edit the copies by hand:
edit the notebook and reset the copy.

A learner's copy holds their work, so a copy that exists is never overwritten: this writes only the
missing ones, and is safe to run again (the Codespace runs it each time the container is created).
``--reset NAME`` (``make student RESET=03_backend``) or ``--force`` (``make student FORCE=1``, every
copy) starts copies again from the instructors' notebooks, after moving the old copy to
``student/.backup/NAME.YYYYmmdd-HHMMSS.ipynb``.

    .venv/bin/python scripts/make_student_notebooks.py [NOTEBOOK ...] [--out DIR] [--reset NAME ...] [--force]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from yolo_service.workshop.teaching import ROOT, write_student_notebook

BACKUP = ".backup"


def backup(copy: Path) -> Path:
    """Move a learner's copy to ``.backup/NAME.TIMESTAMP.ipynb`` next to it; return the new path."""
    folder = copy.parent / BACKUP
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder / f"{copy.stem}.{stamp}{copy.suffix}"
    n = 1
    while target.exists():  # two resets in the same second keep both
        n += 1
        target = folder / f"{copy.stem}.{stamp}-{n}{copy.suffix}"
    return copy.rename(target)


def main(argv: list[str] | None = None) -> int:
    """Write the missing ``student/NN_name.ipynb`` (and the ones reset); keep every other copy as it is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "student", help="default: student/")
    parser.add_argument(
        "--reset",
        action="append",
        default=[],
        metavar="NAME",
        help="start this copy again (03_backend or 03_backend.ipynb; repeatable); the old one is backed up",
    )
    parser.add_argument("--force", action="store_true", help="start every copy again; the old ones are backed up")
    args = parser.parse_args(argv)
    sources = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    reset = {Path(name).stem for name in args.reset}
    unknown = reset - {source.stem for source in sources}
    if unknown:
        parser.error(
            f"no notebook named {', '.join(sorted(unknown))}; choose from {', '.join(s.stem for s in sources)}"
        )
    for source in sources:
        copy = args.out / source.name
        if copy.exists():
            if not (args.force or source.stem in reset):
                print(f"{copy}: kept (your work; `make student RESET={source.stem}` starts it again)")
                continue
            print(f"{copy}: your previous copy is in {backup(copy)}")
        exercises = write_student_notebook(source, copy)
        print(f"{copy}: written, {exercises} exercise{'s' * (exercises != 1)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
