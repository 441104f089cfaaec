"""The learner's text: the site builds strictly, links resolve, and every command and file it quotes exists.

The workshop pages (``workshop/``, a MkDocs site) and the README quote ``yolo-service`` subcommands, ``make``
targets, repository files and the deployment commands of :mod:`yolo_service.workshop.deploy`; each is checked here
against the real parser, Makefile, tree and command builders, so the text cannot drift from the code.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from tests.helpers import ROOT
from yolo_service.cli import build_parser
from yolo_service.samples import PHOTOS, sample_files

STEPS = ["01_concepts", "02_setup", "03_backend", "04_frontend", "05_compose", "06_cloud_run", "07_going_further"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
FENCE = re.compile(r"^( *)```[^\n]*\n(.*?)^\1```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
FILE_NAME = r"[\w.-]+\.(py|ya?ml|toml|txt|ipynb|json|cfg|pt|onnx|jpg|png)|Makefile|Dockerfile"
WORKSHOP = sorted(ROOT.glob("workshop/*.md"))
DOCS = sorted([ROOT / "README.md", *WORKSHOP])
NOTEBOOKS = sorted(ROOT.glob("notebooks/*.ipynb"))
# Files that commands create, or that live outside the repository, named in the text on purpose.
NOT_IN_REPOSITORY = {"student", "site", ".venv", *PHOTOS, "square_and_circle.png", "bench.json", "bench.png"}


def markdown_of(path):
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text()


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks, with ``\\`` continuation lines joined."""
    return [re.sub(r"\\\n\s*", "", block) for _, block in FENCE.findall(text)]


def shell_words(line: str) -> list[str]:
    """A shell line's words, without its comment; [] for a line that is not shell (a diagram)."""
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return []


def tracked_files() -> set[str]:
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(listing.splitlines())


@pytest.mark.parametrize("path", DOCS + NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    targets = [t for t in LINK.findall(markdown_of(path)) if not t.startswith(("http://", "https://"))]
    assert [t for t in targets if not (path.parent / t).exists()] == []


def test_the_site_builds_strictly_with_every_page_in_the_navigation(tmp_path):
    """``mkdocs build --strict``: a broken link, an unknown anchor or a page outside the nav fails it."""
    result = build_site(ROOT, "--site-dir", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    site = tmp_path / "site"
    for step in STEPS:  # each page, and the notebook it links, published with the site
        assert f'href="../repo/notebooks/{step}.ipynb"' in (site / step / "index.html").read_text()
        assert (site / "repo" / "notebooks" / f"{step}.ipynb").is_file()
    assert not (ROOT / "site").exists()


def build_site(project, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )


def test_the_hook_publishes_linked_repository_files_and_a_missing_one_fails_the_build(tmp_path):
    (tmp_path / "pages").mkdir()
    (tmp_path / "notes.txt").write_text("a repository file\n")
    (tmp_path / "mkdocs.yml").write_text(
        f"site_name: t\ndocs_dir: pages\nhooks: [{ROOT / 'scripts' / 'mkdocs_hooks.py'}]\n"
        "validation: {not_found: warn}\n"
    )
    page = tmp_path / "pages" / "index.md"
    page.write_text("[notes](../notes.txt)\n")
    assert build_site(tmp_path).returncode == 0
    assert (tmp_path / "site" / "repo" / "notes.txt").read_text() == "a repository file\n"
    assert 'href="repo/notes.txt"' in (tmp_path / "site" / "index.html").read_text()
    page.write_text("[gone](../missing.txt)\n")
    failed = build_site(tmp_path)
    assert failed.returncode != 0 and "../missing.txt" in failed.stderr


def test_navigation_is_the_steps_in_order():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "workshop" and config["theme"]["name"] == "material"
    pages = [next(iter(entry.values())) for entry in config["nav"]]
    assert pages == ["README.md", *(f"{step}.md" for step in STEPS), "troubleshooting.md", "instructors.md"]
    assert sorted(pages) == sorted(p.name for p in WORKSHOP)
    for extension in ("admonition", "pymdownx.details", "pymdownx.superfences", "tables", "attr_list"):
        assert any(extension in (e if isinstance(e, str) else next(iter(e))) for e in config["markdown_extensions"])


@pytest.mark.parametrize("step", STEPS)
def test_every_step_links_its_notebook_and_has_a_checkpoint(step):
    page = (ROOT / "workshop" / f"{step}.md").read_text()
    assert f"](../notebooks/{step}.ipynb)" in page
    assert f"](../notebooks/{step}.ipynb)" in (ROOT / "workshop" / "README.md").read_text()
    assert '!!! success "Checkpoint"' in page


def test_every_notebook_is_a_step():
    assert sorted(n.stem for n in NOTEBOOKS) == STEPS


@pytest.mark.parametrize("path", WORKSHOP, ids=lambda p: p.name)
def test_admonitions_not_blockquotes(path):
    text = path.read_text()
    assert not re.search(r"^> \*\*", text, re.M), "use !!! note/info/warning/tip/success admonitions"
    for kind in re.findall(r"^ *!!! (\w+)", text, re.M):
        assert kind in {"note", "info", "success", "warning", "tip"}, kind


def test_commands_quoted_in_the_docs_exist():
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    quoted = set()
    for path in DOCS + NOTEBOOKS:
        quoted |= set(re.findall(r"(?<![\w\"=/-])yolo-service ([a-z][a-z-]+)", markdown_of(path)))  # not in a name
    assert quoted and quoted <= commands, quoted - commands
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"\bmake ([a-z]+)", "".join(markdown_of(p) for p in DOCS))):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_compose_v2_only():
    for path in DOCS:
        for block in code_blocks(path.read_text()):
            assert not re.search(r"^\s*docker-compose(\s|$)", block, re.M), path.name


def test_files_quoted_in_the_docs_exist():
    """Every `path/like/this` or `file.ext` quoted in the pages is in the repository (or made by a command)."""
    tracked = tracked_files()
    top = {name.split("/")[0] for name in tracked}
    names = {name.rsplit("/", 1)[-1] for name in tracked}
    directories = {"/".join(name.split("/")[:i]) for name in tracked for i in range(1, name.count("/") + 1)}
    missing = []
    for path in DOCS:
        for token in INLINE.findall(path.read_text()):
            token = token.strip().rstrip("/")
            if " " in token or re.search(r"[$<>*…{}=:]|\.\.\.", token) or token.startswith(("/", "-", ".")):
                continue
            if any(part.split(".")[0].isupper() for part in token.split("/")):  # a placeholder: NAME.pt
                continue
            if "/" in token and token.split("/")[0] in top:
                if token not in tracked and token not in directories:
                    missing.append(f"{path.name}: {token}")
            elif re.fullmatch(FILE_NAME, token) and token not in names | NOT_IN_REPOSITORY:
                missing.append(f"{path.name}: {token}")
    assert missing == []


def test_photo_and_sample_names_in_the_docs_are_real(tmp_path):
    written = sample_files(tmp_path)
    assert set(PHOTOS) | {"square_and_circle.png"} <= set(written)
    readme = (ROOT / "README.md").read_text()
    assert "photo.jpg" not in readme and "yolo-service samples bus.jpg" in readme


def test_cloud_run_commands_are_the_ones_deploy_py_builds():
    """The pages' docker and gcloud commands are exactly what :mod:`yolo_service.workshop.deploy` builds and runs."""
    from yolo_service.workshop import deploy

    config = deploy.DeployConfig(project="${PROJECT_ID}")
    pages = {name: (ROOT / "workshop" / f"{name}.md").read_text() for name in ("06_cloud_run", "07_going_further")}
    lines = {
        tuple(shell_words(line))
        for page in pages.values()
        for block in code_blocks(page)
        for line in block.splitlines()
    }

    def as_shown(argv: list[str]) -> tuple[str, ...]:  # the pages write the registry path as ${REPO}
        return tuple(arg.replace(config.repository_path, "${REPO}") for arg in argv)

    expected = [
        *deploy.enable_apis_commands(config),
        deploy.create_repository_command(config),
        deploy.docker_auth_command(config),
        *deploy.build_push_commands(config),
        deploy.deploy_backend_command(config),
        deploy.deploy_frontend_command(config, "${BACKEND_URL}"),
        deploy.service_logs_command(config),
        deploy.service_logs_command(config, severity="WARNING"),
        deploy.logging_read_command(config, deploy.trace_filter(config, "${REQUEST_ID}")),
        deploy.service_logs_command(config, severity="ERROR", limit=20),  # step 7: after the load test
        *deploy.cleanup_commands(config),
    ]
    assert [shlex.join(c) for c in expected if as_shown(c) not in lines and tuple(c) not in lines] == []
    page = pages["06_cloud_run"]
    assert f"export REPO={config.repository_path}" in page
    flags = {arg.split("=")[0] for arg in deploy.deploy_backend_command(config) if arg.startswith("--")}
    assert [f for f in sorted(flags) if f"| `{f}" not in page] == []  # every backend flag is explained
