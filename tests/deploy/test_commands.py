"""The deployment commands' invariants, against the server's real settings and the images' real files.

Nothing runs docker or gcloud: the commands are inspected as argument lists, and ``run(…, live=False)``
is shown to print the exact command and run nothing.
"""

from __future__ import annotations

import os
import shlex

import pytest

from tests.deploy.dockerfiles import Dockerfile
from tests.helpers import ROOT
from yolo_service.config import Settings
from yolo_service.workshop import deploy
from yolo_service.workshop.deploy import DeployConfig

CONFIG = DeployConfig(project="my-project", tag="v1")
BACKEND = Dockerfile(ROOT / "backend" / "Dockerfile")
FRONTEND = Dockerfile(ROOT / "frontend" / "Dockerfile")


def flags(command: list[str]) -> dict[str, str]:
    """``--name=value`` / ``--name value`` / ``--switch`` arguments as a dict."""
    result, i = {}, 0
    while i < len(command):
        arg = command[i]
        if arg.startswith("--"):
            if "=" in arg:
                key, value = arg[2:].split("=", 1)
            elif i + 1 < len(command) and not command[i + 1].startswith("-") and command[i + 1] != ".":
                key, value = arg[2:], command[i + 1]
                i += 1
            else:
                key, value = arg[2:], ""
            result[key] = value
        i += 1
    return result


def probe(value: str) -> dict[str, str]:
    """``httpGet.path=/ready,periodSeconds=2`` as a dict."""
    return dict(part.split("=", 1) for part in value.split(","))


def test_images_live_in_the_repository_the_path_creates():
    assert CONFIG.backend_image == "europe-west1-docker.pkg.dev/my-project/yolo-service/backend:v1"
    assert CONFIG.frontend_image == "europe-west1-docker.pkg.dev/my-project/yolo-service/frontend:v1"
    create = deploy.create_repository_command(CONFIG)
    assert create[:5] == ["gcloud", "artifacts", "repositories", "create", CONFIG.repository]
    assert flags(create)["repository-format"] == "docker" and flags(create)["location"] == CONFIG.region
    assert deploy.docker_auth_command(CONFIG)[:4] == ["gcloud", "auth", "configure-docker", CONFIG.registry]


def test_the_apis_the_path_uses_are_enabled():
    (command,) = deploy.enable_apis_commands(CONFIG)
    assert command[:3] == ["gcloud", "services", "enable"]
    assert {"run.googleapis.com", "artifactregistry.googleapis.com", "cloudbuild.googleapis.com"} <= set(command)


def test_images_are_built_for_linux_amd64_and_pushed():
    commands = deploy.build_push_commands(CONFIG)
    assert [flags(c)["platform"] for c in commands] == ["linux/amd64", "linux/amd64"]
    assert all(c[:3] == ["docker", "buildx", "build"] and "--push" in c and c[-1] == "." for c in commands)
    backend, frontend = commands
    assert backend[backend.index("-t") + 1] == CONFIG.backend_image and "backend/Dockerfile" in backend
    assert frontend[frontend.index("-t") + 1] == CONFIG.frontend_image and "frontend/Dockerfile" in frontend
    assert flags(backend)["target"] == "runtime" in BACKEND.stages


def test_cloud_build_uses_the_config_file_with_the_same_names():
    command = deploy.cloud_build_command(CONFIG)
    assert command[:5] == ["gcloud", "builds", "submit", "--config", "cloudbuild.yaml"]
    assert (ROOT / "cloudbuild.yaml").is_file()
    subs = dict(pair.split("=") for pair in flags(command)["substitutions"].split(","))
    assert subs == {
        "_REGION": "europe-west1",
        "_REPOSITORY": "yolo-service",
        "_TAG": "v1",
        "_BACKEND_TARGET": "runtime",
    }


def test_backend_deploy_probes_ready_at_startup_and_health_for_liveness():
    f = flags(deploy.deploy_backend_command(CONFIG))
    startup, liveness = probe(f["startup-probe"]), probe(f["liveness-probe"])
    assert startup["httpGet.path"] == "/ready" and liveness["httpGet.path"] == "/health"
    assert startup["httpGet.port"] == liveness["httpGet.port"] == f["port"]
    # Cloud Run allows a startup window (failureThreshold x periodSeconds) of at most 240 s.
    assert 30 <= int(startup["failureThreshold"]) * int(startup["periodSeconds"]) <= 240
    assert "cpu-boost" in f and f["image"] == CONFIG.backend_image and "max-instances" in f


def test_backend_deploy_port_is_the_images_PORT():
    f = flags(deploy.deploy_backend_command(CONFIG))
    for target in ("runtime", "torch"):
        assert f["port"] == BACKEND.env(target)["PORT"]
    assert flags(deploy.deploy_frontend_command(CONFIG, "https://b"))["port"] == FRONTEND.env()["PORT"]


@pytest.mark.parametrize("max_queue", [None, 8, 32])
def test_backend_concurrency_never_exceeds_what_the_server_admits(max_queue):
    settings = None if max_queue is None else Settings(max_queue=max_queue)
    f = flags(deploy.deploy_backend_command(CONFIG, settings))
    admitted = settings.max_queue if settings else Settings.model_fields["max_queue"].default  # the image's
    assert 1 <= int(f["concurrency"]) <= admitted
    # And the server is told the same number, so the two cannot drift apart.
    assert f["update-env-vars"].split(",")[0] == f"YOLO_SERVICE_MAX_QUEUE={f['concurrency']}"


def test_server_limits_fit_cloud_run():
    settings = Settings()
    assert settings.max_body_bytes < deploy.CLOUD_RUN_MAX_REQUEST_BYTES  # else Cloud Run refuses before we can
    assert settings.shutdown_timeout < deploy.CLOUD_RUN_SHUTDOWN_GRACE_SECONDS  # drain before SIGKILL
    timeout = int(flags(deploy.deploy_backend_command(CONFIG))["timeout"])
    assert settings.shutdown_timeout < timeout


@pytest.mark.parametrize("target", ["runtime", "torch"])
def test_backend_is_sized_for_the_measured_memory(target):
    f = flags(deploy.deploy_backend_command(DeployConfig(project="p", backend_target=target)))
    memory_mb = int(f["memory"].removesuffix("Gi")) * 1024**3 / 1e6
    assert memory_mb >= 1.3 * deploy.MEASURED_PEAK_RSS_MB[target]  # scripts/measure_backend_memory.py
    assert int(f["cpu"]) == 2  # Cloud Run: 2 CPUs allow up to 8 GiB, and need no more than 512 MiB


def test_frontend_deploy_fits_streamlit_behind_cloud_run():
    command = deploy.deploy_frontend_command(CONFIG, "https://yolo-backend-abc-ew.a.run.app")
    f = flags(command)
    assert f["update-env-vars"].split(",")[0] == "BACKEND_URL=https://yolo-backend-abc-ew.a.run.app"
    assert "session-affinity" in f  # a session's websocket reconnects to the same instance
    assert int(f["timeout"]) >= 3600  # the websocket lives as long as the request
    assert f["max-instances"] == "1"  # sessions and the cookie secret live in one instance
    assert f["image"] == CONFIG.frontend_image
    # open to anyone: the Backend URL box is fixed, so no visitor has the service call a URL of theirs
    assert "YOLO_SERVICE_UI_BACKEND_EDITABLE=false" in f["update-env-vars"].split(",")


def test_both_services_know_their_project_so_their_log_entries_name_the_trace(monkeypatch):
    """JSON entries carry logging.googleapis.com/trace only when the project is known (GOOGLE_CLOUD_PROJECT)."""
    for command in (deploy.deploy_backend_command(CONFIG), deploy.deploy_frontend_command(CONFIG, "https://b")):
        for pair in flags(command)["update-env-vars"].split(","):
            monkeypatch.setenv(*pair.split("=", 1))  # the service's environment, as Cloud Run sets it
        assert Settings().gcp_project == CONFIG.project
        monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")


def test_the_log_commands_read_one_service_or_one_request():
    assert deploy.service_logs_command(CONFIG) == [
        "gcloud", "run", "services", "logs", "read", "yolo-backend",
        "--region=europe-west1", "--project=my-project", "--limit=50",
    ]  # fmt: skip
    errors = deploy.service_logs_command(CONFIG, "yolo-frontend", severity="ERROR", limit=5)
    assert errors[5] == "yolo-frontend" and errors[-2:] == ["--log-filter=severity>=ERROR", "--limit=5"]
    request = deploy.logging_read_command(CONFIG, deploy.trace_filter(CONFIG, "4bf92f3577b34da6a3ce929d0e0e4736"))
    assert request == [
        "gcloud", "logging", "read", 'trace="projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"',
        "--project=my-project", "--limit=20",
    ]  # fmt: skip


def test_backend_url_command_prints_the_url():
    command = deploy.backend_url_command(CONFIG)
    assert command[:5] == ["gcloud", "run", "services", "describe", CONFIG.backend_service]
    assert flags(command)["format"] == "value(status.url)"


def test_cleanup_deletes_everything_the_path_created():
    created_services = {
        deploy.deploy_backend_command(CONFIG)[3],
        deploy.deploy_frontend_command(CONFIG, "https://b")[3],
    }
    pushed_images = {c[c.index("-t") + 1].rsplit(":", 1)[0] for c in deploy.build_push_commands(CONFIG)}
    repository = deploy.create_repository_command(CONFIG)[4]
    cleanup = deploy.cleanup_commands(CONFIG)
    deleted_services = {c[4] for c in cleanup if c[:4] == ["gcloud", "run", "services", "delete"]}
    deleted_images = {c[5] for c in cleanup if c[:5] == ["gcloud", "artifacts", "docker", "images", "delete"]}
    deleted_repos = {c[4] for c in cleanup if c[:4] == ["gcloud", "artifacts", "repositories", "delete"]}
    assert deleted_services == created_services
    assert deleted_images == pushed_images
    assert deleted_repos == {repository}
    assert all("--quiet" in c for c in cleanup)  # no prompt in a notebook
    # The repository after its images; last, the bucket where `gcloud builds submit` uploaded the sources
    # (it may not exist: Cloud Build is the alternative path).
    assert cleanup[-2][:4] == ["gcloud", "artifacts", "repositories", "delete"]
    assert cleanup[-1][:5] == ["gcloud", "storage", "rm", "--recursive", "gs://my-project_cloudbuild"]


def test_public_services_need_no_allUsers_binding_and_keep_their_other_variables():
    """Domain-restricted sharing refuses allUsers; --set-env-vars would drop e.g. an API key set later."""
    for command in (deploy.deploy_backend_command(CONFIG), deploy.deploy_frontend_command(CONFIG, "https://b")):
        f = flags(command)
        assert "no-invoker-iam-check" in f and "allow-unauthenticated" not in f
        assert "update-env-vars" in f and "set-env-vars" not in f


def test_compose_commands_are_v2():
    assert deploy.compose_up_command()[:2] == ["docker", "compose"]
    assert {"up", "--build", "--wait", "-d"} <= set(deploy.compose_up_command())
    assert deploy.compose_down_command()[:2] == ["docker", "compose"] and "down" in deploy.compose_down_command()


def test_run_when_not_live_prints_the_exact_command_and_runs_nothing(capsys, tmp_path):
    marker = tmp_path / "ran"
    command = ["touch", str(marker), "a b"]
    assert deploy.run(command, live=False) is None
    out = capsys.readouterr().out
    assert shlex.join(command) in out and "not run" in out and "LIVE" in out
    assert not marker.exists()
    assert deploy.run([command, ["false"]], live=False) is None and not marker.exists()
    capsys.readouterr()
    deploy.run(command, live=False, switch="CLEANUP")  # the clean-up's own switch names itself
    assert "CLEANUP is off: set CLEANUP = True" in capsys.readouterr().out


def test_run_when_live_runs_and_stops_the_cell_at_a_failure(tmp_path, capsys):
    marker = tmp_path / "ran"
    assert deploy.run(["touch", str(marker)], live=True) is None and marker.exists()  # nothing for Jupyter to show
    with pytest.raises(deploy.CommandFailed) as failure:
        deploy.run([["true"], ["false"], ["touch", str(tmp_path / "not")]], live=True)
    assert not (tmp_path / "not").exists()  # stops at the first failure
    said = "`false` exited with code 1: its output above says why"
    assert str(failure.value) == said
    assert failure.value._render_traceback_() == [f"\033[31m❌ {said}\033[0m"]  # Jupyter shows one line
    assert "$ touch" in capsys.readouterr().out


def test_run_without_check_says_a_failure_and_goes_on(tmp_path, capsys):
    """The clean-up: a delete that fails is said, and the cell goes on to the next one."""
    assert deploy.run(["false"], live=True, check=False) is None
    assert deploy.run(["touch", str(tmp_path / "next")], live=True, check=False) is None
    assert (tmp_path / "next").exists()
    assert "$ false\nexited with code 1: going on" in capsys.readouterr().out


def test_every_command_is_a_plain_argument_list():
    commands = [
        *deploy.enable_apis_commands(CONFIG),
        deploy.create_repository_command(CONFIG),
        deploy.docker_auth_command(CONFIG),
        *deploy.build_push_commands(CONFIG),
        deploy.cloud_build_command(CONFIG),
        deploy.deploy_backend_command(CONFIG),
        deploy.deploy_frontend_command(CONFIG, "https://b"),
        deploy.backend_url_command(CONFIG),
        *deploy.cleanup_commands(CONFIG),
        deploy.compose_up_command(),
        deploy.compose_down_command(),
    ]
    for command in commands:
        assert command[0] in {"gcloud", "docker"} and all(isinstance(a, str) and a for a in command)
        # What run() prints is one shell line that splits back into the same arguments.
        assert shlex.split(shlex.join(command)) == command


def test_run_refuses_a_command_given_as_text(capsys):
    # Text would be taken one character at a time ("g", "c", "l", ...): say how to make the list instead.
    with pytest.raises(TypeError, match=r"a list of arguments, not text: shlex.split"):
        deploy.run("gcloud run services list", live=False)
    assert capsys.readouterr().out == ""


def test_service_url_is_the_url_gcloud_prints_or_none_with_gclouds_reason(tmp_path, monkeypatch):
    gcloud = tmp_path / "gcloud"
    gcloud.write_text(
        "#!/bin/sh\n"
        'if [ -n "$NO_SERVICE" ]; then\n'
        '  echo "ERROR: (gcloud.run.services.describe) Cannot find service" >&2; exit 1\n'
        "fi\n"
        'echo "$*"\n'
    )
    gcloud.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    config = deploy.DeployConfig(project="p")
    url, why = deploy.service_url(config)
    assert url == " ".join(deploy.backend_url_command(config)[1:]) and why == f"yolo-backend: {url}"  # that command
    monkeypatch.setenv("NO_SERVICE", "1")
    assert deploy.service_url(config) == (
        None,
        "no URL for yolo-backend in europe-west1: ERROR: (gcloud.run.services.describe) Cannot find service",
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert deploy.service_url(config) == (None, "the gcloud CLI is not installed")
