"""The learner's text and the notebooks link to files that exist, and quote commands that exist."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import ROOT
from yolo_service.cli import build_parser

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOCS = sorted([ROOT / "README.md", *ROOT.glob("workshop/*.md")])
NOTEBOOKS = sorted(ROOT.glob("notebooks/*.ipynb"))


def markdown_of(path):
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text()


@pytest.mark.parametrize("path", DOCS + NOTEBOOKS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    targets = [t for t in LINK.findall(markdown_of(path)) if not t.startswith(("http://", "https://"))]
    assert [t for t in targets if not (path.parent / t).exists()] == []


def test_every_workshop_step_links_its_notebook_and_every_notebook_is_linked():
    index = (ROOT / "workshop" / "README.md").read_text()
    for notebook in NOTEBOOKS:
        assert f"../notebooks/{notebook.name}" in index, notebook.name


def test_commands_quoted_in_the_docs_exist():
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    quoted = set()
    for path in DOCS + NOTEBOOKS:
        quoted |= set(re.findall(r"yolo-service ([a-z][a-z-]+)", markdown_of(path)))
    assert quoted and quoted <= commands, quoted - commands
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"\bmake ([a-z]+)", "".join(markdown_of(p) for p in DOCS))):
        assert re.search(rf"^{target}:", makefile, re.M), target
