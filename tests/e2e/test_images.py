"""The images, built and run with a real container engine, as a learner's machine and Cloud Run would.

The engine is Docker when its daemon answers, else podman (installed from Debian's packages by
scripts/container_engine.py, with a stand-in for the official base image when Docker Hub cannot be
reached; the summary at the end of the run says which). The backend's default target is built with
``MODEL=shapes`` (offline, no torch) and the frontend as it is; then:

- each image runs like a Cloud Run container: read-only root filesystem, ``/tmp`` in memory, ``$PORT``
  set, published on 127.0.0.1 only; ready time, a correct prediction, uid, HEALTHCHECK, SIGTERM;
- ``docker-compose.yml`` brings both up (Docker Compose v2, else podman-compose, polled: 1.0.3 has no
  ``--wait``), the UI's container reaches the backend by its service name, nothing is written outside
  ``/tmp``, and it comes down again;
- a copy of the build context with ``yolo_service/__init__.py`` edited rebuilds with every third-party layer
  reused (compared by layer digest).

Figures (build times, sizes, ready and stop times) are printed in the run's summary and written to
``test-artifacts/images.json``. The test skips only when no engine can be installed at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scripts.container_engine import BASE_IMAGE, Engine, EngineUnavailable, ensure_engine
from tests.deploy.dockerfiles import Dockerfile
from tests.helpers import ARTIFACTS, REPORT, ROOT, assert_finds, free_port
from yolo_service import PredictResponse, encode_base64, sample_scenes
from yolo_service.workshop.deploy import CLOUD_RUN_SHUTDOWN_GRACE_SECONDS

# Cold builds download a few hundred MB of wheels: far longer than the suite's default timeout per test.
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.containers, pytest.mark.timeout(1800)]

TAG = "yolo-service-{}:test"
PROJECT = "yolo-service-test"  # the compose project: its own network and containers
FIGURES: dict[str, object] = {}


def note(key: str, value: object, line: str) -> None:
    """Keep a figure for test-artifacts/images.json and print its line in the run's summary."""
    FIGURES[key] = value
    REPORT.append(line)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "images.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


@pytest.fixture(scope="module")
def engine() -> Engine:
    try:
        found = ensure_engine()
    except EngineUnavailable as exc:
        pytest.skip(f"no container engine can be installed here: {exc}")
    note("engine", found.name, found.describe())
    note("stand_in", found.stand_in, "")
    return found


def build(engine: Engine, name: str, context: Path, dockerfile: str, tag: str, **build_args: str) -> float:
    """Build ``dockerfile`` in ``context`` as ``tag``; return the seconds it took (the log goes to test-artifacts)."""
    command = engine.build_command(context, dockerfile, tag, build_args=build_args)
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **engine.build_env})
    seconds = time.monotonic() - start
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"build-{name}.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"{' '.join(command)}\n{(result.stdout + result.stderr)[-4000:]}"
    return seconds


def image_size_mb(engine: Engine, tag: str) -> float:
    """The image's size, uncompressed, in MB (what ``docker images`` shows)."""
    return int(engine("image", "inspect", "--format", "{{.Size}}", tag).stdout) / 1e6


def layers(engine: Engine, tag: str) -> list[str]:
    """The image's layer digests, base first."""
    return json.loads(engine("image", "inspect", "--format", "{{json .RootFS.Layers}}", tag).stdout)


@pytest.fixture(scope="module")
def backend_image(engine) -> str:
    tag = TAG.format("backend")
    seconds = build(engine, "backend", ROOT, "backend/Dockerfile", tag, MODEL="shapes")
    size = image_size_mb(engine, tag)
    note("backend_build_s", round(seconds, 1), f"backend image (MODEL=shapes): built in {seconds:.0f} s, {size:.0f} MB")
    FIGURES["backend_mb"] = round(size)
    return tag


@pytest.fixture(scope="module")
def frontend_image(engine) -> str:
    tag = TAG.format("frontend")
    seconds = build(engine, "frontend", ROOT, "frontend/Dockerfile", tag)
    size = image_size_mb(engine, tag)
    note("frontend_build_s", round(seconds, 1), f"frontend image: built in {seconds:.0f} s, {size:.0f} MB")
    FIGURES["frontend_mb"] = round(size)
    return tag


@dataclass
class Container:
    """A detached container published on 127.0.0.1:``port``; stopped (once) by :meth:`stop`."""

    engine: Engine
    name: str
    port: int
    started: float
    stopped: tuple[float, int] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, path: str, timeout: float = 120) -> float:
        """Seconds from ``run`` until ``path`` answers 200 (fails with the container's log otherwise)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: {path} not 200 after {timeout} s:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        result = self.engine("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.engine("exec", self.name, *argv, check=False)

    def stop(self) -> tuple[float, int]:
        """SIGTERM, then SIGKILL after Cloud Run's grace period: (seconds it took, exit code)."""
        if self.stopped is None:
            start = time.monotonic()
            self.engine("stop", "-t", str(CLOUD_RUN_SHUTDOWN_GRACE_SECONDS), self.name, check=False, timeout=60)
            seconds = time.monotonic() - start
            code = int(self.engine("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())
            (ARTIFACTS / f"container-{self.name}.log").write_text(self.logs())
            self.engine("rm", "-f", self.name, check=False)
            self.stopped = (seconds, code)
        return self.stopped


def healthy(engine: Engine, container: str, timeout: float = 90) -> bool:
    """True once the image's HEALTHCHECK passes in ``container``.

    podman (without systemd, nothing schedules the checks) runs it on demand; Docker runs it on its
    own schedule, read from ``inspect``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.name == "podman":
            if engine("healthcheck", "run", container, check=False).returncode == 0:
                return True
        elif engine("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip() == "healthy":
            return True
        time.sleep(1)
    return False


def run_like_cloud_run(engine: Engine, image: str, name: str) -> Container:
    """``image`` as Cloud Run runs it: read-only root, ``/tmp`` in memory, ``$PORT`` set (8080, not the image's)."""
    engine("rm", "-f", name, check=False)
    port = free_port()
    start = time.monotonic()
    engine(
        "run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp", "--env", "PORT=8080",
        "--network", "bridge", "--publish", f"127.0.0.1:{port}:8080",
        "--health-interval", "2s",  # Docker's own checks: every 2 s instead of 15 (podman's run on demand)
        image,
    )  # fmt: skip
    return Container(engine, name, port, start)


@pytest.fixture(scope="module")
def backend(engine, backend_image):
    container = run_like_cloud_run(engine, backend_image, "yolo-service-test-backend")
    ready = container.wait("/ready")
    note("backend_ready_s", round(ready, 1), f"backend: /ready {ready:.1f} s after `run` (read-only root, /tmp tmpfs)")
    yield container
    container.stop()


@pytest.fixture(scope="module")
def frontend(engine, frontend_image):
    container = run_like_cloud_run(engine, frontend_image, "yolo-service-test-frontend")
    ready = container.wait("/_stcore/health")
    note("frontend_ready_s", round(ready, 1), f"frontend: healthy {ready:.1f} s after `run` (read-only root)")
    yield container
    container.stop()


def test_backend_image_predicts_with_MODEL_as_its_default(backend):
    image, shapes = sample_scenes()["three shapes"]  # a triangle, a circle and a square at known places
    response = httpx.post(backend.url + "/predict", json={"image": encode_base64(image)}, timeout=60)
    assert response.status_code == 200, response.text
    result = PredictResponse.model_validate(response.json())
    assert result.model == "shapes"  # the build's MODEL, through YOLO_SERVICE_DEFAULT_MODEL
    assert_finds(shapes, result.detections)
    models = httpx.get(backend.url + "/models/shapes", timeout=10).json()
    assert models["default"] and models["loaded"]


@pytest.mark.parametrize("service", ["backend", "frontend"])
def test_runs_as_uid_10001_and_its_healthcheck_passes(request, engine, service):
    container = request.getfixturevalue(service)
    status = container.exec("cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uids) == {"10001"}, status  # real, effective, saved, filesystem: the server process
    assert healthy(engine, container.name), container.logs()[-3000:]


def test_frontend_never_looks_up_its_external_ip(frontend):
    log = frontend.logs()
    assert "URL: http://localhost:" in log and "External URL" not in log, log[-2000:]
    assert "Did not auto detect external IP" not in log


def test_openvino_telemetry_is_declined_in_the_backend_image(backend):
    probe = (
        "from openvino_telemetry.utils.opt_in_checker import OptInChecker;"
        "print(OptInChecker().check(enable_opt_in_dialog=False).name)"
    )
    result = backend.exec("python", "-c", probe)
    assert result.stdout.strip() == "DECLINED", result.stdout + result.stderr


@pytest.mark.parametrize("service", ["backend", "frontend"])
def test_SIGTERM_stops_it_within_cloud_runs_grace(request, service):
    container = request.getfixturevalue(service)
    seconds, code = container.stop()
    note(f"{service}_stop_s", round(seconds, 1), f"{service}: exit {code}, {seconds:.1f} s after SIGTERM")
    # An exit within the grace period is a clean one (0); the SIGKILL at its end would be 137.
    assert code == 0, container.logs()[-3000:]


# ---- docker-compose.yml, as a learner runs it


def compose_command(engine: Engine) -> list[str]:
    assert engine.compose, f"{engine.name} has no compose tool here"
    return [*engine.compose, "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml")]


def service_container(engine: Engine, service: str) -> str:
    """The id of the compose project's container running ``service`` (Docker and podman-compose label both)."""
    found = engine(
        "ps", "-q",
        "--filter", f"label=com.docker.compose.project={PROJECT}",
        "--filter", f"label=com.docker.compose.service={service}",
    ).stdout.split()  # fmt: skip
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def compose(engine, backend_image, frontend_image):
    """``MODEL=shapes docker compose up --build`` (both images: from the layers built above), then down."""
    env = {
        **os.environ,
        **engine.build_env,
        "MODEL": "shapes",
        "BACKEND_PORT": str(free_port()),
        "FRONTEND_PORT": str(free_port()),
    }
    command = compose_command(engine)
    subprocess.run([*command, "down"], env=env, capture_output=True, timeout=120)
    up = [*command, "up", "--build", "-d"] + (["--wait"] if engine.name == "docker" else [])
    start = time.monotonic()
    result = subprocess.run(up, env=env, capture_output=True, text=True, timeout=900)
    (ARTIFACTS / "compose-up.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    containers = {service: service_container(engine, service) for service in ("backend", "frontend")}
    for service, container in containers.items():  # podman-compose has no --wait: poll each healthcheck
        assert healthy(engine, container, timeout=180), f"{service} never became healthy"
    seconds = time.monotonic() - start
    note("compose_up_s", round(seconds, 1), f"compose: both services healthy {seconds:.0f} s after `up --build`")
    yield containers, env
    down = subprocess.run([*command, "down"], env=env, capture_output=True, text=True, timeout=180)
    assert down.returncode == 0, down.stderr[-2000:]
    left = engine("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").stdout.split()
    assert left == [], f"`down` left {left}"


def test_compose_ui_reaches_the_backend_by_service_name(engine, compose):
    containers, env = compose
    # Inside the UI's container, its own BACKEND_URL (http://backend:8000) names the backend's service.
    check = engine("exec", containers["frontend"], "sh", "-c", 'yolo-service check "$BACKEND_URL"', check=False)
    assert "checking http://backend:8000" in check.stdout, check.stdout + check.stderr
    assert check.returncode == 0 and "all checks passed" in check.stdout, check.stdout + check.stderr
    # And from this machine, through the published port (127.0.0.1 only).
    ready = httpx.get(f"http://127.0.0.1:{env['BACKEND_PORT']}/ready", timeout=10)
    assert ready.status_code == 200


def test_compose_backend_writes_nothing_outside_tmp(engine, compose):
    containers, _ = compose
    changed = engine("diff", containers["backend"]).stdout.split("\n")
    paths = [line.split(maxsplit=1)[1] for line in changed if line.strip()]
    # No compiled-model cache beside the weights, no OpenVINO telemetry client id in the home directory
    # (both would show here). /etc: the engine's own mount points for hosts, hostname and resolv.conf.
    engine_files = {"/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
    assert [p for p in paths if not p.startswith("/tmp") and p not in engine_files] == [], paths


def test_compose_runs_the_images_it_names(engine, compose):
    containers, _ = compose
    image_of = "{{.ImageName}}" if engine.name == "podman" else "{{.Config.Image}}"
    for service, container in containers.items():
        assert f"yolo-service-{service}:latest" in engine("inspect", "--format", image_of, container).stdout


# ---- rebuild after a code edit


def build_context_copy(destination: Path) -> Path:
    """The files the build context allows (the root .dockerignore's allowlist) and the Dockerfiles, copied."""
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    destination.mkdir(parents=True)
    for name in [*allowed, "backend", ".dockerignore"]:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def test_a_code_edit_rebuilds_only_the_kits_layers(engine, backend_image, tmp_path):
    context = build_context_copy(tmp_path / "context")
    init = context / "yolo_service" / "__init__.py"
    init.write_text(init.read_text() + "\n# an edit: the rebuild must reuse every third-party layer\n")
    edited = TAG.format("backend") + "-edited"
    seconds = build(engine, "backend-edited", context, "backend/Dockerfile", edited, MODEL="shapes")
    before, after = layers(engine, backend_image), layers(engine, edited)
    assert before != after  # the edit is in the new image
    reused = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), len(before))
    # The layers that come before the kit's code: the base image's, then one per RUN/COPY of the runtime
    # target until the first COPY of the kit (the pinned packages, the model).
    dockerfile = Dockerfile(ROOT / "backend" / "Dockerfile", {"MODEL": "shapes"})
    steps = [i for i in dockerfile.effective("runtime") if i.keyword in ("RUN", "COPY")]
    first_code = next(n for n, i in enumerate(steps) if i.keyword == "COPY" and "pyproject.toml" in i.args)
    third_party = len(layers(engine, BASE_IMAGE)) + first_code
    assert reused >= third_party, f"{reused} layers reused, {third_party} come before the kit's code"
    # Rebuilt: the package's files and their install (--editable, no download), nothing else.
    edited_steps = steps[next(n for n, i in enumerate(steps) if i.args.startswith("yolo_service ")) :]
    assert len(after) - reused == len(edited_steps) == 2, [f"{i.keyword} {i.args[:60]}" for i in edited_steps]
    note(
        "rebuild_after_edit_s",
        round(seconds, 1),
        f"rebuild after editing yolo_service/__init__.py: {seconds:.0f} s, {reused} of {len(after)} layers reused "
        f"(the {third_party} before the kit's code among them)",
    )
    engine("rmi", edited, check=False)
