"""How long each notebook takes: executed (measured) and read (estimated), for the instructors' page.

Execution: each instructors' notebook runs top to bottom on a fresh kernel with nbclient, offline (as the
tests run them), one at a time, live cells off; the time is the wall time from the kernel's start to the
last cell, kernel start-up included. On a shared machine it varies with what else runs: say so next to it.

Reading: the words of the markdown cells at 200 words a minute, plus the code cells at 10 lines a minute
(code is read slower than prose). The code a notebook shows from the kit's files (``show_source``) is not
counted: add a few minutes where a step reads a lot of it (steps 3 and 4).

    PYTHONPATH=$PWD .venv/bin/python scripts/measure_notebooks.py [NOTEBOOK ...]
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WORDS_PER_MINUTE = 200
CODE_LINES_PER_MINUTE = 10


def reading_minutes(notebook: nbformat.NotebookNode) -> int:
    """Minutes to read ``notebook``: its prose at 200 words a minute, its code at 10 lines a minute, rounded up."""
    words = sum(len(re.findall(r"\w+", c.source)) for c in notebook.cells if c.cell_type == "markdown")
    code_lines = sum(
        1 for c in notebook.cells if c.cell_type == "code" for line in c.source.splitlines() if line.strip()
    )
    return math.ceil(words / WORDS_PER_MINUTE + code_lines / CODE_LINES_PER_MINUTE)


def execution_seconds(path: Path) -> float:
    """Wall time of one run of ``path`` on a fresh kernel, offline, in an empty working directory."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    os.environ.setdefault("YOLO_SERVICE_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": workdir}})
        client.execute()
        return time.perf_counter() - start


def main(paths: list[Path]) -> int:
    """Print a Markdown table: notebook, execution time, reading time."""
    print("| Notebook | Runs in (measured) | Reading (estimated) |")
    print("|---|---:|---:|")
    for path in paths:
        seconds = execution_seconds(path)
        minutes = reading_minutes(nbformat.read(path, as_version=4))
        print(f"| `{path.name}` | {seconds:.0f} s | {minutes} min |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main([Path(a) for a in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("*.ipynb"))))
