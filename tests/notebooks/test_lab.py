"""``make lab``: JupyterLab rooted at the repository and opened in ``student/``, so every notebook's links open.

A relative link in a notebook's Markdown (``../workshop/03_backend.md``) is resolved by JupyterLab against the
notebook's folder, inside the lab's root: a lab rooted at ``student/`` cannot reach ``../workshop/``. The
tests read the lab's command from the Makefile (``make -n lab``), follow every relative link of every
notebook, the instructors' (``notebooks/``) and the learners' (``student/``, as ``make student`` writes them),
against that root, and open one through a running JupyterLab's contents API, as a click in the lab does.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import nbformat
import pytest

from tests.helpers import ROOT, JupyterLab
from tests.notebooks.runner import NOTEBOOKS
from yolo_service.workshop.teaching import write_student_notebook

#: Markdown links and images, and HTML href/src attributes.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|(?:href|src)\s*=\s*[\"']([^\"']+)[\"']")


def relative_links(notebook: Path) -> list[str]:
    """The relative links of the notebook's Markdown cells, without ``#fragment`` or ``?query``."""
    links = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        for match in LINK.finditer(cell.source):
            parts = urlsplit(match.group(1) or match.group(2))
            if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
                continue  # a web address, an in-page anchor, or an absolute path
            links.append(unquote(parts.path))
    return links


def lab_command(*make_args: str) -> list[str]:
    """The ``jupyter lab ...`` command ``make lab`` runs (from ``make -n``, so nothing runs)."""
    dry_run = subprocess.run(
        ["make", "-n", "-s", "--no-print-directory", "lab", f"VENV={sys.prefix}", *make_args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (line,) = [line for line in dry_run.splitlines() if re.search(r"\bjupyter lab\b", line)]
    return shlex.split(line)


def option(command: list[str], name: str) -> str:
    (value,) = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    return value


def test_make_lab_is_rooted_at_the_repository_and_opens_the_learners_copies():
    command = lab_command()
    assert command[1:2] == ["lab"]
    assert Path(ROOT, option(command, "ServerApp.root_dir")).resolve() == ROOT  # make runs in the repository
    assert option(command, "ContentsManager.preferred_dir") == "student"
    # The file browser's folder must exist when the lab starts: `make lab` makes the missing copies first.
    assert re.search(r"^lab:.*\bstudent\b", (ROOT / "Makefile").read_text(), re.M)
    assert option(lab_command("LAB_DIR=notebooks"), "ContentsManager.preferred_dir") == "notebooks"


@pytest.fixture(scope="module")
def learners_copies(tmp_path_factory) -> Path:
    """The learners' copies as ``make student`` writes them (in a temporary folder, not the repository's)."""
    out = tmp_path_factory.mktemp("student")
    for source in NOTEBOOKS:
        write_student_notebook(source, out / source.name)
    return out


def lab_paths(folder: str, notebook: Path) -> list[tuple[str, str]]:
    """``(link, path in the lab)`` for each relative link of ``notebook``, opened from ``folder/`` in the lab."""
    return [(link, posixpath.normpath(posixpath.join(folder, link))) for link in relative_links(notebook)]


@pytest.mark.parametrize("folder", ["notebooks", "student"])
def test_every_relative_link_of_every_notebook_resolves_in_the_lab(folder, learners_copies):
    root = Path(ROOT, option(lab_command(), "ServerApp.root_dir")).resolve()
    where = posixpath.relpath(ROOT / folder, root)  # the notebooks' folder, as the lab sees it
    assert not where.startswith(".."), f"{folder}/ is outside the lab's root {root}"
    copies = {source.name: (source if folder == "notebooks" else learners_copies / source.name) for source in NOTEBOOKS}
    followed, broken = 0, []
    for name, notebook in copies.items():
        for link, path in lab_paths(where, notebook):
            followed += 1
            if path.startswith("../") or path == "..":
                broken.append(f"{folder}/{name}: {link} leaves the lab's root")
            elif posixpath.dirname(path) == posixpath.relpath(ROOT / "student", root):  # a learner's copy
                if posixpath.basename(path) not in copies:
                    broken.append(f"{folder}/{name}: {link} is not a learner's copy")
            elif not (root / path).exists():
                broken.append(f"{folder}/{name}: {link} -> {path} does not exist")
    assert followed >= len(NOTEBOOKS), "every notebook links to its step's page"
    assert broken == []


@pytest.mark.slow
def test_a_notebook_link_opens_through_a_running_jupyterlab(tmp_path, learners_copies):
    # The lab of `make lab`, with the instructors' folder to open (the repository's student/ may not exist yet).
    command = lab_command("LAB_DIR=notebooks")
    link, path = lab_paths("student", learners_copies / "03_backend.ipynb")[0]
    assert link.startswith("../") and not path.startswith("..")
    with JupyterLab(command[2:], tmp_path) as lab:
        opened = httpx.get(f"{lab.url}/api/contents/{path}", headers=lab.headers, timeout=30)
        assert opened.status_code == 200, opened.text
        assert (opened.json()["path"], opened.json()["type"]) == (path, "file")
        assert opened.json()["content"] == (ROOT / path).read_text()
        # The file browser opens in the folder given by LAB_DIR.
        page = httpx.get(f"{lab.url}/lab", headers=lab.headers, timeout=30)
        config = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page.text, re.S)
        assert config and json.loads(config.group(1))["preferredPath"].strip("/") == "notebooks"
