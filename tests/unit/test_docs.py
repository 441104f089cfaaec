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


def resolves(path, target: str) -> bool:
    """A relative link's target exists; a learner's ``student/NN.ipynb`` is made from ``notebooks/NN.ipynb``."""
    resolved = (path.parent / target).resolve()
    if resolved.parent == ROOT / "student" and resolved.suffix == ".ipynb":
        return (ROOT / "notebooks" / resolved.name).is_file()
    return resolved.exists()


@pytest.mark.parametrize("path", DOCS + NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    targets = [t for t in LINK.findall(markdown_of(path)) if not t.startswith(("http://", "https://"))]
    assert [t for t in targets if not resolves(path, t)] == []


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The workshop built with ``mkdocs build --strict`` (a broken link, anchor or page outside the nav fails it)."""
    site = tmp_path_factory.mktemp("site")
    result = build_site(ROOT, "--site-dir", str(site))
    assert result.returncode == 0, result.stderr
    assert not (ROOT / "site").exists()
    return site


def test_the_site_links_the_learners_copies_never_the_solutions(site):
    import nbformat

    from yolo_service.workshop.teaching import BEGIN_SOLUTION, PLACEHOLDER

    for step in STEPS:  # each page links the learners' copy, published with the site
        assert f'href="../student/{step}.ipynb"' in (site / step / "index.html").read_text()
        copy = nbformat.read(site / "student" / f"{step}.ipynb", as_version=4)
        code = "\n".join(c.source for c in copy.cells if c.cell_type == "code")
        assert PLACEHOLDER in code and BEGIN_SOLUTION not in code
    pages = {p.relative_to(site).as_posix(): p.read_text() for p in site.rglob("*.html")}
    to_solutions = {page for page, html in pages.items() if re.search(r'href="[^"]*notebooks/[^"]*\.ipynb"', html)}
    assert to_solutions == set()
    assert not (site / "repo" / "notebooks").exists()


def test_long_commands_scroll_and_flags_never_break_mid_word(site):
    css = (ROOT / "workshop" / "stylesheets" / "extra.css").read_text()
    assert re.search(r"pre > code \{[^}]*white-space: pre;[^}]*overflow-x: auto;", css)
    assert re.search(r"code \.nowrap \{[^}]*white-space: nowrap;", css)
    html = (site / "06_cloud_run" / "index.html").read_text()
    assert '<code class="nowrap">--allow-unauthenticated</code>' in html
    assert "<code>--allow-unauthenticated</code>" not in html
    # Inline code with spaces breaks between its words only, and its text (what a copy gives) is unchanged.
    words = ("gcloud", "auth", "configure-docker")
    spaced = "<code>" + " ".join(f'<span class="nowrap">{word}</span>' for word in words) + "</code>"
    assert spaced in html
    assert "extra.css" in html


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
def test_every_step_links_its_learners_notebook_and_has_a_checkpoint(step):
    page = (ROOT / "workshop" / f"{step}.md").read_text()
    assert f"](../student/{step}.ipynb)" in page and "make student" in page
    assert f"](../student/{step}.ipynb)" in (ROOT / "workshop" / "README.md").read_text()
    assert '!!! success "Checkpoint"' in page


def test_each_step_has_one_title_in_the_navigation_its_page_and_its_notebook():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = {page: title for entry in config["nav"] for title, page in entry.items()}
    for step in STEPS:
        page = (ROOT / "workshop" / f"{step}.md").read_text().splitlines()[0]
        notebook = json.loads((ROOT / "notebooks" / f"{step}.ipynb").read_text())["cells"][0]
        assert (page, "".join(notebook["source"]).splitlines()[0]) == (f"# {nav[step + '.md']}",) * 2


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
    for target in set(re.findall(r"\bmake ([a-z][a-z-]*[a-z])", "".join(markdown_of(p) for p in DOCS))):
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


# The shapes of JSON the text quotes: `{"image": "<base64>", "model": "shapes"}`, `{"model", "detections": [...]}`.
SHAPE = re.compile(r"`(\{[^`]*\})`")


def split_items(body: str) -> list[str]:
    """``body``'s items, split at the commas outside brackets and quotes."""
    items, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(body):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "{[":
            depth += 1
        elif not quoted and char in "}]":
            depth -= 1
        elif not quoted and char == "," and depth == 0:
            items.append(body[start:index])
            start = index + 1
    return [item.strip() for item in [*items, body[start:]] if item.strip()]


def parse_shape(text: str) -> dict:
    """The keys of a quoted JSON shape, nested shapes parsed: ``{"a", "b": [{"c"}], "d": 1}``.

    A key alone (``"a"``) or with any value; ``…`` or ``...`` items are the writer's "and the rest" inside a
    list, and are skipped; ``[...]`` as a value says nothing about its items.
    """
    text = text.strip()
    assert text.startswith("{") and text.endswith("}"), text
    shape: dict = {}
    for item in split_items(text[1:-1]):
        if item in ("…", "..."):
            continue
        match = re.fullmatch(r'"(\w+)"\s*(?::\s*(.*))?', item, re.S)
        assert match, f"not a key: {item!r} in {text}"
        key, value = match[1], (match[2] or "").strip()
        if value.startswith("{"):
            shape[key] = parse_shape(value)
        elif value.startswith("[{"):
            shape[key] = [parse_shape(split_items(value[1:-1])[0])]
        else:
            shape[key] = value
    return shape


def schema_of(shape: dict):
    """Which class of ``yolo_service.schema`` a quoted shape shows, and whether it is a request."""
    from yolo_service import schema

    if "detections" in shape:
        return schema.PredictResponse, False
    if "x_min" in shape:
        return schema.Detection, False
    if "detail" in shape:
        return schema.ErrorResponse, False
    if shape.get("status") == '"ready"':
        return schema.ReadyResponse, False
    if shape.get("status") == '"ok"':
        return schema.HealthResponse, False
    if isinstance(shape.get("image"), str):
        return schema.PredictRequest, True
    raise AssertionError(f"a JSON shape that is none of the API's: {shape}")


def shape_problems(shape: dict, model, request: bool) -> list[str]:
    """What the quoted shape gets wrong about ``model``: unknown fields, and fields it leaves out.

    A request may leave out optional fields; a response must show every field the API always sends
    (all but the ``None``-by-default ones, such as ``annotated_image``).
    """
    from pydantic import BaseModel

    fields = model.model_fields
    problems = [f"{model.__name__} has no field {key!r}" for key in shape if key not in fields]
    always = {n for n, f in fields.items() if f.is_required() or (not request and f.default is not None)}
    problems += [f"{model.__name__}.{name} is left out" for name in sorted(always - set(shape))]
    for key, value in shape.items():
        annotation = getattr(fields.get(key), "annotation", None)
        if isinstance(value, list):  # list[Detection]
            annotation = annotation.__args__[0]
            value = value[0]
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            problems += shape_problems(value, annotation, request)
    return problems


def test_shape_parser_reads_the_notations_the_text_uses():
    assert parse_shape('{"model", "detections": [{"x_min", …}, …], "time": 0.05}') == {
        "model": "",
        "detections": [{"x_min": ""}],
        "time": "0.05",
    }
    assert parse_shape('{"image": "<base64>", "model": "shapes"}') == {"image": '"<base64>"', "model": '"shapes"'}
    from yolo_service import schema

    bad = parse_shape('{"model": …, "detections": [{"x_min", "y_min", "x_max", "y_max", "class_name"}], "time": 1}')
    assert shape_problems(bad, schema.PredictResponse, request=False) == [
        "PredictResponse.image is left out",
        "Detection.class_id is left out",
        "Detection.confidence is left out",
    ]


@pytest.mark.parametrize("path", DOCS + NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_json_shape_in_the_text_matches_the_schema(path):
    """Each request or response the text quotes has exactly the fields of ``yolo_service/schema.py``."""
    problems = []
    for text in SHAPE.findall(markdown_of(path)):
        shape = parse_shape(text)
        model, request = schema_of(shape)
        problems += [f"{text}: {problem}" for problem in shape_problems(shape, model, request)]
    assert problems == []


def test_the_text_quotes_the_predict_contract_somewhere():
    quoted = [parse_shape(t) for path in DOCS + NOTEBOOKS for t in SHAPE.findall(markdown_of(path))]
    assert {schema_of(shape)[0].__name__ for shape in quoted} >= {"PredictRequest", "PredictResponse", "Detection"}


def test_the_size_of_the_app_learners_write_is_what_the_text_says():
    """Step 3's "about N lines" (page and notebook) is the size of the myapp.py the notebook writes."""
    notebook = json.loads((ROOT / "notebooks" / "03_backend.ipynb").read_text())
    app = next("".join(c["source"]) for c in notebook["cells"] if "".join(c["source"]).startswith("%%writefile"))
    written = [line for line in app.splitlines()[1:] if "### " not in line]  # the markers are not in the file
    claims = [
        int(n)
        for path in (ROOT / "workshop" / "03_backend.md", ROOT / "notebooks" / "03_backend.ipynb")
        for n in re.findall(r"about (\d+) lines", markdown_of(path))
    ]
    assert len(claims) >= 2 and all(abs(n - len(written)) <= 3 for n in claims), (claims, len(written))


def test_the_instructors_timings_list_every_notebook_with_its_reading_estimate():
    """The reading column is what scripts/measure_notebooks.py computes (the execution column is measured)."""
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("measure_notebooks", ROOT / "scripts" / "measure_notebooks.py")
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    page = (ROOT / "workshop" / "instructors.md").read_text()
    rows = dict(re.findall(r"^\| `(\d\d_\w+)\.ipynb` \| \d+ s \| (\d+) min \|$", page, re.M))
    assert sorted(rows) == STEPS
    for step, minutes in rows.items():
        assert int(minutes) == measure.reading_minutes(nbformat.read(ROOT / "notebooks" / f"{step}.ipynb", 4)), step


@pytest.mark.parametrize("path", [*WORKSHOP, *NOTEBOOKS], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_text_refers_only_to_what_the_learner_has(path):
    """No "original workshop", "previous session", Colab notebook or test script the learner never had."""
    text = markdown_of(path) if path.suffix == ".md" else json.dumps(json.loads(path.read_text())["cells"])
    gone = r"original (workshop|colab|notebook)|previous sessions?|\bcolab\b|test_webapp|workshop's test script"
    assert re.findall(gone, text, re.I) == []
