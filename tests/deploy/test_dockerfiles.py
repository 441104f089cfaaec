"""The images' build files, read statically: layer order, pinned dependencies, offline run time, context.

No Docker engine here: the Dockerfiles are parsed (tests/deploy/dockerfiles.py), the requirement
sets are resolved offline from the installed virtualenv's metadata (scripts/pin_requirements.py),
and each rule is checked against the real files. Each checker is also shown failing on a bad input.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from scripts import container_engine
from scripts import pin_requirements as pins
from tests.deploy.dockerfiles import Dockerfile, copies_kit_code, copy_sources, layer_order_problems
from tests.helpers import ROOT
from yolo_service.engines import export
from yolo_service.engines.base import ModelSpec
from yolo_service.models import COCO_MODELS, PREFERRED_DEFAULT
from yolo_service.workshop import deploy

BACKEND = Dockerfile(ROOT / "backend" / "Dockerfile")
FRONTEND = Dockerfile(ROOT / "frontend" / "Dockerfile")
#: Every image (Dockerfile, target) a user can build, and the port its deploy command uses.
TARGETS = [(BACKEND, "runtime"), (BACKEND, "torch"), (BACKEND, "exported"), (FRONTEND, None)]
SERVED = [(BACKEND, "runtime", deploy.BACKEND_PORT), (BACKEND, "torch", deploy.BACKEND_PORT), (FRONTEND, None, 8501)]
REQUIREMENTS = ROOT / "requirements"


def target_id(value):
    return value.path.parent.name if isinstance(value, Dockerfile) else str(value)


def requirement_names(name: str) -> set[str]:
    """The package names of requirements/NAME.txt."""
    lines = (REQUIREMENTS / name).read_text().splitlines()
    return {line.split("==")[0] for line in lines if line and not line.startswith("#")}


@pytest.mark.parametrize(("dockerfile", "target"), TARGETS, ids=target_id)
def test_kit_code_is_copied_after_the_dependencies_and_the_weights(dockerfile, target):
    assert layer_order_problems(dockerfile, target or dockerfile.default_target) == []


def test_the_layer_order_check_catches_the_old_layout(tmp_path):
    # The layout this repository had before: the kit copied, then everything installed on top.
    old = tmp_path / "Dockerfile"
    old.write_text(
        "FROM python:3.11-slim\n"
        "COPY constraints.txt ./\n"
        "COPY pyproject.toml README.md ./\n"
        "COPY yolo_service ./yolo_service\n"
        'RUN pip install --no-deps -r /tmp/requirements/backend.txt && pip install ".[serve]"\n'
        "RUN python -c 'from ultralytics.utils.downloads import attempt_download_asset as get; get(\"x.pt\")'\n"
        'CMD ["yolo-service", "serve"]\n'
    )
    problems = layer_order_problems(Dockerfile(old), "0")
    assert len(problems) == 2 and "comes after the kit's code" in problems[0], problems


@pytest.mark.parametrize("dockerfile", [BACKEND, FRONTEND], ids=target_id)
def test_base_image_is_pinned(dockerfile):
    bases = {dockerfile.base_of(s) for s in dockerfile.stages.values()} - set(dockerfile.stages)
    assert bases == {"python:3.11-slim-bookworm"}
    assert f"docker.io/library/{bases.pop()}" == container_engine.BASE_IMAGE  # what the stand-in is tagged


@pytest.mark.parametrize("dockerfile", [BACKEND, FRONTEND], ids=target_id)
def test_every_pip_install_is_pinned_and_pulls_in_nothing(dockerfile):
    runs = [ins.args for stage in dockerfile.stages.values() for ins in stage.instructions if ins.keyword == "RUN"]
    installs = [part for run in runs for part in run.split("&&") if "pip install" in part]
    assert installs
    for install in installs:
        assert "--no-deps" in install, install  # the requirement files hold the whole closure
        words = shlex.split(install)
        packages = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
        # Only requirement files (after -r), the torch index (a build argument), or the kit itself (".").
        for word in packages:
            assert word in (".", "${TORCH_INDEX}") or word.startswith("/tmp/requirements/"), install
    assert "pip uninstall" not in dockerfile.text  # no install-then-remove dance (e.g. opencv-python)


def test_torch_comes_without_its_dependencies_from_the_cpu_index():
    runs = [ins.args for ins in BACKEND.effective("torch") if ins.keyword == "RUN"]
    assert any('pip install --no-deps --index-url "${TORCH_INDEX}" -r /tmp/requirements/torch.txt' in r for r in runs)
    assert BACKEND.args("torch")["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"  # the default: CPU only
    pinned = pins.read_constraints()
    assert (REQUIREMENTS / "torch.txt").read_text().count("==") == 2
    assert {f"torch=={pinned['torch']}", f"torchvision=={pinned['torchvision']}"} <= set(
        (REQUIREMENTS / "torch.txt").read_text().splitlines()
    )


def test_requirement_files_are_in_sync_with_pyproject_and_constraints():
    generated = pins.generate()
    on_disk = {p.name: p.read_text() for p in REQUIREMENTS.glob("*.txt")}
    assert on_disk == generated, "requirements/ is out of date: run python scripts/pin_requirements.py"


@pytest.mark.parametrize("extra", ["serve", "ui", "runtime", "dev"])
def test_each_install_resolves_offline_to_packages_constraints_pins(extra):
    """The extra's dependency closure, from installed metadata, for linux/amd64: every package pinned, consistently."""
    closure = pins.resolve(pins.pyproject_roots([extra]))
    assert len(closure.packages) > 20
    assert pins.problems(closure, pins.read_constraints()) == []


def test_the_resolution_check_catches_an_unpinned_or_conflicting_package():
    closure = pins.resolve([Requirement("fastapi"), Requirement("uvicorn[standard]")])
    assert {"starlette", "uvloop", "httptools"} <= set(closure.packages)  # the extra's dependencies are followed
    constraints = pins.read_constraints()
    del constraints["starlette"]
    constraints["uvicorn"] = "0.1.0"
    found = pins.problems(closure, constraints) + pins.problems(pins.resolve([Requirement("fastapi>=99")]), constraints)
    assert any(p.startswith("starlette: not pinned") for p in found), found
    assert any("fastapi==" in p and "does not satisfy fastapi>=99" in p for p in found), found


def test_images_carry_only_what_they_need():
    backend, runtime, frontend = (requirement_names(f"{n}.txt") for n in ("backend", "runtime", "frontend"))
    heavy = {"torch", "torchvision", "ultralytics", "opencv-python", "opencv-python-headless"}
    assert not heavy & frontend and not heavy & runtime
    assert {"openvino", "onnxruntime", "numpy", "fastapi", "uvicorn"} <= runtime
    assert {"streamlit"} <= frontend
    assert "opencv-python-headless" in backend and "opencv-python" not in backend  # no libGL needed
    assert "ultralytics" in backend and not {"torch", "torchvision"} & backend  # torch: CPU index (torch.txt)
    assert not [n for n in backend | runtime | frontend if pins.is_cuda_only(n)]


def test_frontend_image_has_no_weights_and_no_torch():
    text = " ".join(f"{ins.keyword} {ins.args}" for ins in FRONTEND.effective())  # instructions, not comments
    assert "weights" not in text and "attempt_download_asset" not in text and "torch" not in text


def test_runtime_is_the_default_target_and_carries_no_torch():
    assert BACKEND.default_target == "runtime"
    assert {"base", "exported", "torch", "runtime"} <= set(BACKEND.stages)
    runtime_chain = [stage.name for stage in BACKEND.chain("runtime")]
    assert "torch-deps" not in runtime_chain and "exported" not in runtime_chain  # torch is only copied from
    assert BACKEND.env("runtime")["YOLO_SERVICE_ENGINE"] == "auto"  # no torch there: OpenVINO on the ONNX file
    assert BACKEND.env("torch")["YOLO_SERVICE_ENGINE"] == "ultralytics"
    weights = [ins for ins in BACKEND.chain("runtime")[-1].instructions if ins.keyword == "COPY" and "from" in ins.args]
    assert weights and copy_sources(weights[0])[1]["from"] == "onnx"
    assert copy_sources(weights[0])[0] == ["/opt/yolo-service/onnx/"]  # only what the onnx stage exported
    exports = [ins.args for ins in BACKEND.effective("exported") if ins.keyword == "RUN" and "export.py" in ins.args]
    weights, onnx = "/opt/yolo-service/weights/${MODEL}.pt", "/opt/yolo-service/onnx/${MODEL}.onnx"
    assert exports == [f'python /tmp/export.py "{weights}" "{onnx}"']
    assert BACKEND.args("exported")["MODEL"] == "yolo26n"


def test_the_export_takes_only_the_export_module_of_the_kit():
    """Editing the kit re-runs the export only when the export module itself changes."""
    kit = [copy_sources(i)[0] for i in BACKEND.effective("exported") if copies_kit_code(i)]
    assert kit == [["yolo_service/engines/export.py"]]
    # ... which imports nothing of the kit when it is loaded (it runs as a script, alone).
    tree = ast.parse((ROOT / "yolo_service" / "engines" / "export.py").read_text())
    top_level = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert [node.module for node in top_level if node.level] == [], "a relative import at module level"
    assert all(not (node.module or "").startswith("yolo_service") for node in top_level)
    assert ModelSpec("x", "coco", ROOT / "x.pt", "").imgsz == export.DEFAULT_IMGSZ  # the script's default size


@pytest.mark.parametrize("model", ["shapes", *COCO_MODELS])
def test_MODEL_is_the_default_model_and_picks_where_its_onnx_comes_from(model):
    backend = BACKEND.with_args(MODEL=model)
    assert backend.env("runtime")["YOLO_SERVICE_DEFAULT_MODEL"] == model
    assert backend.env("torch")["YOLO_SERVICE_DEFAULT_MODEL"] == model
    needed = backend.needs("runtime")
    if model == "shapes":  # its .onnx ships in the kit's package: no torch, no download, offline
        assert needed == {"base", "shapes-onnx", "onnx", "runtime"}, needed
        assert backend.stages["shapes-onnx"].instructions == []
    else:  # a COCO model: downloaded with Ultralytics, exported with torch
        assert {"torch-deps", "weights", "exported", f"{model}-onnx"} <= needed, needed


def test_the_default_MODEL_is_the_catalog_preferred_one():
    assert BACKEND.global_args["MODEL"] == PREFERRED_DEFAULT
    assert BACKEND.env("runtime")["YOLO_SERVICE_DEFAULT_MODEL"] == PREFERRED_DEFAULT


@pytest.mark.parametrize("target", ["runtime", "torch"])
def test_backend_is_offline_at_run_time(target):
    env = BACKEND.env(target)
    assert env["YOLO_SERVICE_OFFLINE"] == "1"  # never downloads weights: a request for yolo11m is a clear 503
    assert env["YOLO_OFFLINE"] == "1"  # Ultralytics: no connectivity check, so no analytics events either
    assert env["YOLO_SERVICE_WEIGHTS_DIR"] == "/opt/yolo-service/weights"
    if target == "torch":
        assert env["YOLO_AUTOINSTALL"] == "false"  # never pip-installs at run time
        assert any("settings.update(sync=False)" in ins.args for ins in BACKEND.effective("torch"))


@pytest.mark.parametrize(("dockerfile", "target", "port"), SERVED, ids=target_id)
def test_served_images_run_as_non_root_with_healthcheck_on_PORT(dockerfile, target, port):
    assert dockerfile.last("USER", target).args == "10001"
    assert dockerfile.last("HEALTHCHECK", target) is not None
    assert dockerfile.env(target)["PORT"] == str(port) == dockerfile.last("EXPOSE", target).args
    assert dockerfile.last("CMD", target).args.startswith('["yolo-service"')


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go's filepath.Match, plus ``**`` for any number of directories)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] in "*?":
            out, i = out + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins; ``!`` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        regex = _pattern(pattern.lstrip("!").rstrip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not pattern.startswith("!")
    return ignored


def ignore_patterns(dockerfile: Dockerfile) -> list[str]:
    """The patterns BuildKit applies to ``dockerfile``'s context: ``<Dockerfile>.dockerignore``, else the root's."""
    own = dockerfile.path.with_name(dockerfile.path.name + ".dockerignore")
    text = (own if own.is_file() else ROOT / ".dockerignore").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("dockerfile", [BACKEND, FRONTEND], ids=target_id)
def test_dockerignore_sends_exactly_what_the_dockerfile_copies(dockerfile):
    patterns = ignore_patterns(dockerfile)
    sources = {
        src
        for stage in dockerfile.stages.values()
        for ins in stage.instructions
        if ins.keyword == "COPY" and "from" not in copy_sources(ins)[1]
        for src in copy_sources(ins)[0]
    }
    assert {"yolo_service", "README.md", "pyproject.toml"} <= sources
    for src in sources:
        assert not _ignored(src.rstrip("/"), patterns), f"{src} is COPY'd but .dockerignore leaves it out"
    for path in ("yolo_service/models.py", "pyproject.toml", "requirements/runtime.txt", "frontend/app.py"):
        assert not _ignored(path, patterns), path
    for path in (
        ".git",
        ".venv/bin/python",
        "tests/unit",
        "notebooks/x.ipynb",
        "yolo26n.pt",
        ".env",
        "workshop",
        "constraints.txt",
        "yolo_service/__pycache__/models.cpython-311.pyc",
        "test-artifacts/x.png",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    # The bundled model ships in the backend's package; the frontend image carries no weights at all.
    assert _ignored("yolo_service/weights/shapes.pt", patterns) == (dockerfile is FRONTEND)
    assert _ignored("yolo_service/weights/shapes.onnx", patterns) == (dockerfile is FRONTEND)


def test_deploy_ports_match_the_images():
    assert BACKEND.env("runtime")["PORT"] == BACKEND.env("torch")["PORT"] == str(deploy.BACKEND_PORT)
    assert FRONTEND.env()["PORT"] == str(deploy.FRONTEND_PORT)


def test_no_docker_compose_v1_anywhere_we_own():
    owned = [ROOT / "Makefile", ROOT / "README.md", ROOT / "docker-compose.yml", *Path(ROOT / ".github").rglob("*.yml")]
    owned += [Path(deploy.__file__)]
    for path in owned:
        assert "docker-compose " not in path.read_text().replace("docker-compose.yml", ""), path
