"""Every command of the deployment path (docker compose, Artifact Registry, Cloud Build, Cloud Run), in one place.

The notebooks, the workshop text and the tests use these builders, so what a learner reads is what
runs. A builder returns the command as a list of arguments (or a list of commands); :func:`run`
runs one only when asked (``live=True``), otherwise it prints the exact shell command and why it
did not run. Nothing here runs at import, and nothing imports torch.

The Cloud Run flags follow the container contract: the port is the image's ``PORT``; a startup
probe on ``/ready`` holds traffic until the model is loaded; a liveness probe on ``/health``
restarts a wedged instance; ``--concurrency`` never exceeds what the server admits
(``Settings.max_queue``), so a burst starts new instances instead of getting 503s. Both services
get ``GOOGLE_CLOUD_PROJECT``: with it, their JSON log entries name the request's trace, and Cloud
Logging groups them with Cloud Run's request log (:func:`trace_filter` finds one request's).

Public services use ``--no-invoker-iam-check``, the way Cloud Run's documentation recommends
(https://cloud.google.com/run/docs/authenticating/public): ``--allow-unauthenticated`` grants the
invoker role to ``allUsers``, which an organisation's domain-restricted sharing policy refuses (a
school's or a company's project). Environment variables are set with ``--update-env-vars``:
``--set-env-vars`` first removes every variable the service has, such as an API key added later
(https://cloud.google.com/sdk/gcloud/reference/run/deploy).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import MiB, Settings
from .teaching import OneLine

__all__ = [
    "CommandFailed",
    "BACKEND_PORT",
    "CLOUD_RUN_MAX_REQUEST_BYTES",
    "CLOUD_RUN_SHUTDOWN_GRACE_SECONDS",
    "FRONTEND_PORT",
    "MEASURED_PEAK_RSS_MB",
    "DeployConfig",
    "backend_concurrency",
    "backend_url_command",
    "build_push_commands",
    "cleanup_commands",
    "cloud_build_bucket",
    "cloud_build_command",
    "compose_down_command",
    "compose_up_command",
    "create_repository_command",
    "deploy_backend_command",
    "deploy_frontend_command",
    "docker_auth_command",
    "docker_available",
    "dockerfile_cmd",
    "enable_apis_commands",
    "gcloud_project",
    "logging_read_command",
    "run",
    "service_logs_command",
    "service_url",
    "trace_filter",
]

#: The ``PORT`` each image sets (backend/Dockerfile, frontend/Dockerfile; a test checks they agree).
BACKEND_PORT = 8000
FRONTEND_PORT = 8501
#: Cloud Run's documented limits: an HTTP/1 request body, and the time between SIGTERM and SIGKILL.
CLOUD_RUN_MAX_REQUEST_BYTES = 32 * MiB
CLOUD_RUN_SHUTDOWN_GRACE_SECONDS = 10
#: The APIs the path uses: Cloud Run, Artifact Registry (images), Cloud Build (building without Docker).
APIS = ("run.googleapis.com", "artifactregistry.googleapis.com", "cloudbuild.googleapis.com")

# Sizing, from a measurement on 2 CPUs (scripts/measure_backend_memory.py: a yolo26n-sized model, 32
# concurrent requests of 640x480 then 4000x3000 JPEGs): peak RSS in MB per backend target. Memory is
# the next Cloud Run size with at least 30 % headroom; 2 CPUs match the server's two model replicas.
MEASURED_PEAK_RSS_MB = {"runtime": 608, "torch": 1484}
BACKEND_MEMORY = {"runtime": "1Gi", "torch": "2Gi"}
BACKEND_CPU = 2
FRONTEND_MEMORY = "512Mi"
FRONTEND_CPU = 1


@dataclass(frozen=True)
class DeployConfig:
    """Where the workshop deploys: the GCP project, region, Artifact Registry repository, services and tag."""

    project: str = "PROJECT"
    region: str = "europe-west1"
    repository: str = "yolo-service"
    backend_service: str = "yolo-backend"
    frontend_service: str = "yolo-frontend"
    tag: str = "latest"
    backend_target: str = "runtime"  # the backend Dockerfile's stage: runtime (OpenVINO) or torch (PyTorch)
    max_instances: int = 3

    @property
    def registry(self) -> str:
        """The Artifact Registry host of the region."""
        return f"{self.region}-docker.pkg.dev"

    @property
    def repository_path(self) -> str:
        """``REGION-docker.pkg.dev/PROJECT/REPOSITORY``: every image of the path lives under it."""
        return f"{self.registry}/{self.project}/{self.repository}"

    @property
    def backend_image(self) -> str:
        """The backend image's full name and tag."""
        return f"{self.repository_path}/backend:{self.tag}"

    @property
    def frontend_image(self) -> str:
        """The frontend image's full name and tag."""
        return f"{self.repository_path}/frontend:{self.tag}"


def _scope(config: DeployConfig) -> list[str]:
    return [f"--region={config.region}", f"--project={config.project}"]


def enable_apis_commands(config: DeployConfig) -> list[list[str]]:
    """Enable Cloud Run, Artifact Registry and Cloud Build in the project (once per project)."""
    return [["gcloud", "services", "enable", *APIS, f"--project={config.project}"]]


def create_repository_command(config: DeployConfig) -> list[str]:
    """Create the Artifact Registry Docker repository that holds both images."""
    return [
        "gcloud",
        "artifacts",
        "repositories",
        "create",
        config.repository,
        "--repository-format=docker",
        f"--location={config.region}",
        f"--project={config.project}",
        "--description=yolo-service workshop images",
    ]


def docker_auth_command(config: DeployConfig) -> list[str]:
    """Let the local ``docker`` push to the region's Artifact Registry with your gcloud login."""
    return ["gcloud", "auth", "configure-docker", config.registry, "--quiet"]


def build_push_commands(config: DeployConfig) -> list[list[str]]:
    """Build both images for linux/amd64 (Cloud Run's platform, also from an ARM laptop) and push them."""
    images = [
        ("backend/Dockerfile", config.backend_image, ["--target", config.backend_target]),
        ("frontend/Dockerfile", config.frontend_image, []),
    ]
    return [
        [
            "docker",
            "buildx",
            "build",
            "--platform",
            "linux/amd64",
            "-f",
            dockerfile,
            *target,
            "-t",
            image,
            "--push",
            ".",
        ]
        for dockerfile, image, target in images
    ]


def cloud_build_command(config: DeployConfig) -> list[str]:
    """Build and push both images on Cloud Build instead (``cloudbuild.yaml``; no local Docker needed)."""
    values = {
        "_REGION": config.region,
        "_REPOSITORY": config.repository,
        "_TAG": config.tag,
        "_BACKEND_TARGET": config.backend_target,
    }
    substitutions = ",".join(f"{key}={value}" for key, value in values.items())
    return [
        "gcloud",
        "builds",
        "submit",
        "--config",
        "cloudbuild.yaml",
        f"--substitutions={substitutions}",
        f"--project={config.project}",
        ".",
    ]


def backend_concurrency(settings: Settings | None = None) -> int:
    """Requests Cloud Run may send one instance at once: what the server admits before a fast 503.

    The image's default (``Settings.max_queue``'s default) unless ``settings`` say otherwise;
    :func:`deploy_backend_command` passes the same number to the server, so the two always agree.
    """
    if settings is None:
        return int(Settings.model_fields["max_queue"].default)
    return settings.max_queue


def deploy_backend_command(config: DeployConfig, settings: Settings | None = None) -> list[str]:
    """``gcloud run deploy`` for the API: probes, CPU boost, bounded concurrency, sized from a measurement."""
    probe_port = f"httpGet.port={BACKEND_PORT}"
    concurrency = backend_concurrency(settings)
    return [
        "gcloud",
        "run",
        "deploy",
        config.backend_service,
        f"--image={config.backend_image}",
        *_scope(config),
        "--no-invoker-iam-check",  # public, without an allUsers binding
        f"--port={BACKEND_PORT}",
        f"--memory={BACKEND_MEMORY[config.backend_target]}",
        f"--cpu={BACKEND_CPU}",
        f"--concurrency={concurrency}",
        f"--update-env-vars=YOLO_SERVICE_MAX_QUEUE={concurrency},GOOGLE_CLOUD_PROJECT={config.project}",
        f"--max-instances={config.max_instances}",
        "--timeout=60",  # seconds per request: a prediction takes well under one
        "--cpu-boost",  # more CPU while the model loads
        # Traffic only once the model is loaded: /ready answers 503 until then (up to 2 minutes).
        f"--startup-probe=httpGet.path=/ready,{probe_port},initialDelaySeconds=0,periodSeconds=2,"
        "timeoutSeconds=1,failureThreshold=60",
        # A wedged instance (the event loop stuck) is restarted.
        f"--liveness-probe=httpGet.path=/health,{probe_port},periodSeconds=15,timeoutSeconds=3,failureThreshold=3",
    ]


def deploy_frontend_command(config: DeployConfig, backend_url: str) -> list[str]:
    """``gcloud run deploy`` for the Streamlit UI, pointed at the backend's URL.

    Streamlit keeps each session in one instance's memory over a websocket: session affinity,
    a long request timeout (the websocket's lifetime) and a single instance keep a session whole.
    A UI open to anyone talks only to its own backend: a visitor cannot have the service call a URL
    of theirs (``YOLO_SERVICE_UI_BACKEND_EDITABLE=false``).
    """
    return [
        "gcloud",
        "run",
        "deploy",
        config.frontend_service,
        f"--image={config.frontend_image}",
        *_scope(config),
        "--no-invoker-iam-check",  # public, without an allUsers binding
        f"--port={FRONTEND_PORT}",
        f"--memory={FRONTEND_MEMORY}",
        f"--cpu={FRONTEND_CPU}",
        f"--update-env-vars=BACKEND_URL={backend_url},GOOGLE_CLOUD_PROJECT={config.project},"
        "YOLO_SERVICE_UI_BACKEND_EDITABLE=false",
        "--session-affinity",
        "--timeout=3600",
        "--max-instances=1",
    ]


def backend_url_command(config: DeployConfig) -> list[str]:
    """Print the backend service's HTTPS URL (the frontend's ``BACKEND_URL``)."""
    return [
        "gcloud",
        "run",
        "services",
        "describe",
        config.backend_service,
        *_scope(config),
        "--format=value(status.url)",
    ]


def service_url(config: DeployConfig) -> tuple[str | None, str]:
    """The backend service's URL, asked with :func:`backend_url_command`; or None and gcloud's reason.

    A service that was not deployed (or not in this region or project) has no URL: gcloud says so on
    stderr, and the notebook must stop there rather than call an empty address.
    """
    if shutil.which("gcloud") is None:
        return None, "the gcloud CLI is not installed"
    url, said = _ask_gcloud(backend_url_command(config), timeout=60)
    if not url:
        return None, f"no URL for {config.backend_service} in {config.region}: {said}"
    return url, f"{config.backend_service}: {url}"


def _ask_gcloud(argv: list[str], timeout: float) -> tuple[str | None, str]:
    """What a gcloud command printed (None if it failed or printed nothing), and gcloud's last word on stderr."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    said = result.stderr.strip().splitlines()
    answer = result.stdout.strip()
    return (answer if result.returncode == 0 and answer else None), (said[-1] if said else "gcloud printed none")


def service_logs_command(
    config: DeployConfig, service: str | None = None, *, severity: str | None = None, limit: int = 50
) -> list[str]:
    """A service's latest log entries, newest first: Cloud Run's request log and the container's lines.

    ``severity`` (e.g. ``WARNING``): only the entries that bad or worse (the API's are JSON with a
    ``severity``: a 4xx is WARNING, a 5xx and a traceback ERROR).
    """
    command = ["gcloud", "run", "services", "logs", "read", service or config.backend_service, *_scope(config)]
    if severity:
        command.append(f"--log-filter=severity>={severity}")
    return [*command, f"--limit={limit}"]


def trace_filter(config: DeployConfig, request_id: str) -> str:
    """The Cloud Logging query for one request's entries, in every service: the trace the API names in them."""
    return f'trace="projects/{config.project}/traces/{request_id}"'


def logging_read_command(config: DeployConfig, log_filter: str, *, limit: int = 20) -> list[str]:
    """The project's log entries that match a Cloud Logging query (e.g. :func:`trace_filter`), newest first."""
    return ["gcloud", "logging", "read", log_filter, f"--project={config.project}", f"--limit={limit}"]


def cleanup_commands(config: DeployConfig) -> list[list[str]]:
    """Delete everything the path created: both services, both images, the repository, Cloud Build's bucket.

    ``gcloud builds submit`` uploads the sources to the bucket ``gs://PROJECT_cloudbuild`` (its
    ``--gcs-source-staging-dir``); deleting it is last, and says "not found" if Cloud Build was never used.
    """
    services = [
        ["gcloud", "run", "services", "delete", name, *_scope(config), "--quiet"]
        for name in (config.frontend_service, config.backend_service)
    ]
    images = [
        ["gcloud", "artifacts", "docker", "images", "delete", image, "--delete-tags", "--quiet"]
        for image in (config.frontend_image.rsplit(":", 1)[0], config.backend_image.rsplit(":", 1)[0])
    ]
    repository = [
        "gcloud",
        "artifacts",
        "repositories",
        "delete",
        config.repository,
        f"--location={config.region}",
        f"--project={config.project}",
        "--quiet",
    ]
    bucket = [
        "gcloud",
        "storage",
        "rm",
        "--recursive",
        cloud_build_bucket(config),
        f"--project={config.project}",
        "--quiet",
    ]
    return [*services, *images, repository, bucket]


def cloud_build_bucket(config: DeployConfig) -> str:
    """The bucket ``gcloud builds submit`` creates for the project's uploaded sources."""
    return f"gs://{config.project}_cloudbuild"


def compose_up_command(compose_file: str | Path = "docker-compose.yml") -> list[str]:
    """Build and start both services; return once both healthchecks pass (Compose v2)."""
    return ["docker", "compose", "-f", str(compose_file), "up", "--build", "--wait", "-d"]


def compose_down_command(compose_file: str | Path = "docker-compose.yml") -> list[str]:
    """Stop and remove what :func:`compose_up_command` started."""
    return ["docker", "compose", "-f", str(compose_file), "down"]


class CommandFailed(OneLine, RuntimeError):
    """A live command exited with an error: its cell stops there, and "Run All" with it; its output says why."""

    def __init__(self, argv: Sequence[str], code: int) -> None:
        super().__init__(f"`{shlex.join(argv)}` exited with code {code}: its output above says why")
        self.argv, self.code = list(argv), code


def run(
    command: Sequence[str] | Sequence[Sequence[str]], *, live: bool, switch: str = "LIVE", check: bool = True
) -> None:
    """Run ``command`` when ``live``; otherwise print the exact shell command and why it did not run.

    A list of commands runs in order and stops at the first that fails. ``switch`` is the name of the
    notebook's switch that ``live`` comes from (``LIVE``, or ``CLEANUP`` for the clean-up), for the message.

    Raises:
        CommandFailed: a command exited with an error, so the next cells do not build on it. With
            ``check=False`` the failure is printed instead and the cell goes on (the clean-up: a delete
            that fails must not keep the others from running).
    """
    if isinstance(command, str):
        raise TypeError(f"a command is a list of arguments, not text: shlex.split({command!r}) makes one")
    if command and isinstance(command[0], str):
        commands = [[str(word) for word in command]]
    else:
        commands = [[str(word) for word in argv] for argv in command]
    for argv in commands:
        text = shlex.join(argv)
        if not live:
            print(f"not run ({switch} is off: set {switch} = True to run it):\n  {text}")
            continue
        print(f"$ {text}", flush=True)
        code = subprocess.run(argv).returncode
        if code != 0:
            if check:
                raise CommandFailed(argv, code)
            print(f"exited with code {code}: going on", flush=True)
            return


def dockerfile_cmd(dockerfile: str | Path) -> list[str]:
    """The exec-form ``CMD [...]`` of a Dockerfile's last stage (its default target): what the container runs."""
    lines = [line.strip() for line in Path(dockerfile).read_text(encoding="utf-8").splitlines()]
    cmd = [line for line in lines if line.startswith("CMD ")]
    if not cmd:
        raise ValueError(f"{dockerfile} has no CMD")
    argv = json.loads(cmd[-1][4:])
    if not isinstance(argv, list):
        raise ValueError(f"{dockerfile}: the last CMD is not in exec form (a JSON list)")
    return [str(word) for word in argv]


def docker_available() -> tuple[bool, str]:
    """Whether a Docker engine answers (not just the client), and why not."""
    if shutil.which("docker") is None:
        return False, "the docker command is not installed"
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20
    )
    if result.returncode != 0:
        return False, "no Docker engine answers (docker is only a client here)"
    return True, f"Docker engine {result.stdout.strip()}"


def gcloud_project() -> tuple[str | None, str]:
    """The configured GCP project, or None and why."""
    if shutil.which("gcloud") is None:
        return None, "the gcloud CLI is not installed"
    project, _ = _ask_gcloud(["gcloud", "config", "get-value", "project"], timeout=30)
    if not project or project == "(unset)":
        return None, "gcloud has no project configured: run `gcloud init`"
    return project, f"project {project}"
