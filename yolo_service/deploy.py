"""The deployment commands of the workshop (docker compose, gcloud run), and running them only when possible.

Notebooks and the workshop text show the same commands that these functions build.
A command that needs a Docker engine or a configured gcloud runs only when that is
there; otherwise :func:`run` prints the exact command and why it did not
run, so a notebook still passes on a machine without them.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DeployConfig",
    "backend_url_command",
    "build_push_commands",
    "cleanup_commands",
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
    "run",
]


def dockerfile_cmd(dockerfile: str | Path) -> list[str]:
    """The exec-form ``CMD [...]`` of a Dockerfile: the command its container runs."""
    lines = [line.strip() for line in Path(dockerfile).read_text().splitlines()]
    cmd = [line for line in lines if line.startswith("CMD ")]
    if not cmd:
        raise ValueError(f"{dockerfile} has no CMD")
    return json.loads(cmd[-1][4:])


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
    result = subprocess.run(["gcloud", "config", "get-value", "project"], capture_output=True, text=True, timeout=30)
    project = result.stdout.strip()
    if result.returncode != 0 or not project or project == "(unset)":
        return None, "gcloud has no project configured: run `gcloud init`"
    return project, f"project {project}"


@dataclass(frozen=True)
class DeployConfig:
    """Where the workshop deploys: project, region, Artifact Registry repository, service names, image tag."""

    project: str
    region: str = "europe-west1"
    repository: str = "yolo-service"
    backend_service: str = "yolo-backend"
    frontend_service: str = "yolo-frontend"
    tag: str = "latest"
    memory: str = "2Gi"
    cpu: int = 2
    concurrency: int = 8
    min_instances: int = 0
    max_instances: int = 3

    @property
    def registry(self) -> str:
        """``REGION-docker.pkg.dev/PROJECT/REPO``."""
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.repository}"

    @property
    def backend_image(self) -> str:
        """The backend image in Artifact Registry."""
        return f"{self.registry}/backend:{self.tag}"

    @property
    def frontend_image(self) -> str:
        """The frontend image in Artifact Registry."""
        return f"{self.registry}/frontend:{self.tag}"


def enable_apis_commands(config: DeployConfig) -> list[list[str]]:
    """Enable Cloud Run, Artifact Registry and Cloud Build in the project."""
    apis = ["run.googleapis.com", "artifactregistry.googleapis.com", "cloudbuild.googleapis.com"]
    return [["gcloud", "services", "enable", *apis, f"--project={config.project}"]]


def create_repository_command(config: DeployConfig) -> list[str]:
    """Create the Docker repository in Artifact Registry."""
    return [
        "gcloud", "artifacts", "repositories", "create", config.repository, "--repository-format=docker",
        f"--location={config.region}", f"--project={config.project}",
    ]  # fmt: skip


def docker_auth_command(config: DeployConfig) -> list[str]:
    """Let Docker push to the region's registry with gcloud's credentials."""
    return ["gcloud", "auth", "configure-docker", f"{config.region}-docker.pkg.dev", "--quiet"]


def build_push_commands(config: DeployConfig) -> list[list[str]]:
    """Build both images for linux/amd64 (what Cloud Run runs) and push them."""
    return [
        [
            "docker",
            "buildx",
            "build",
            "--platform",
            "linux/amd64",
            "-f",
            f"{name}/Dockerfile",
            "-t",
            image,
            "--push",
            ".",
        ]
        for name, image in (("backend", config.backend_image), ("frontend", config.frontend_image))
    ]


def cloud_build_command(config: DeployConfig) -> list[str]:
    """Build and push both images with Cloud Build instead (no local Docker needed)."""
    return [
        "gcloud", "builds", "submit", "--config=cloudbuild.yaml", f"--project={config.project}",
        f"--substitutions=_REGION={config.region},_REPOSITORY={config.repository},_TAG={config.tag}", ".",
    ]  # fmt: skip


def deploy_backend_command(config: DeployConfig) -> list[str]:
    """Deploy the backend: probes on /ready and /health, CPU boost, bounded concurrency."""
    return [
        "gcloud", "run", "deploy", config.backend_service, f"--image={config.backend_image}",
        f"--region={config.region}", f"--project={config.project}", "--allow-unauthenticated", "--port=8000",
        f"--memory={config.memory}", f"--cpu={config.cpu}", f"--concurrency={config.concurrency}",
        f"--min-instances={config.min_instances}", f"--max-instances={config.max_instances}",
        "--startup-probe=httpGet.path=/ready,periodSeconds=2,failureThreshold=60",
        "--liveness-probe=httpGet.path=/health,periodSeconds=30", "--cpu-boost",
    ]  # fmt: skip


def deploy_frontend_command(config: DeployConfig, backend_url: str) -> list[str]:
    """Deploy the UI with BACKEND_URL set to the backend's URL."""
    return [
        "gcloud", "run", "deploy", config.frontend_service, f"--image={config.frontend_image}",
        f"--region={config.region}", f"--project={config.project}", "--allow-unauthenticated", "--port=8501",
        f"--set-env-vars=BACKEND_URL={backend_url}", "--session-affinity", "--timeout=3600", "--max-instances=1",
    ]  # fmt: skip


def backend_url_command(config: DeployConfig) -> list[str]:
    """Print the backend's HTTPS URL."""
    return [
        "gcloud", "run", "services", "describe", config.backend_service, f"--region={config.region}",
        f"--project={config.project}", "--format=value(status.url)",
    ]  # fmt: skip


def cleanup_commands(config: DeployConfig) -> list[list[str]]:
    """Delete both services, then the repository with its images."""
    where = [f"--region={config.region}", f"--project={config.project}", "--quiet"]
    return [
        ["gcloud", "run", "services", "delete", config.backend_service, *where],
        ["gcloud", "run", "services", "delete", config.frontend_service, *where],
        ["gcloud", "artifacts", "repositories", "delete", config.repository, f"--location={config.region}",
         f"--project={config.project}", "--quiet"],
    ]  # fmt: skip


def compose_up_command(compose_file: str | Path = "docker-compose.yml") -> list[str]:
    """Build and start both services, waiting until they are healthy (compose v2)."""
    return ["docker", "compose", "-f", str(compose_file), "up", "--build", "--wait", "-d"]


def compose_down_command(compose_file: str | Path = "docker-compose.yml") -> list[str]:
    """Stop and remove the services and their network."""
    return ["docker", "compose", "-f", str(compose_file), "down"]


def run(command: list[str], *, live: bool) -> int | None:
    """Run ``command`` when ``live``; otherwise print it and why it did not run.

    Returns:
        The exit code, or None when the command was not run.
    """
    text = shlex.join(command)
    if not live:
        print(f"not run (LIVE is False: set LIVE = True to really run it):\n  $ {text}")
        return None
    if shutil.which(command[0]) is None:
        print(f"not run ({command[0]} is not installed):\n  $ {text}")
        return None
    print(f"$ {text}", flush=True)
    return subprocess.run(command).returncode
