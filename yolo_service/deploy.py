"""The deployment commands of the workshop (docker compose, gcloud run), and running them only when possible.

Notebooks and the workshop text show the same commands that these functions build.
A command that needs a Docker engine or a configured gcloud runs only when that is
there; otherwise :func:`run_or_explain` prints the exact command and why it did not
run, so a notebook still passes on a machine without them.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CloudRunService", "docker_available", "dockerfile_cmd", "gcloud_project", "run_or_explain"]


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
class CloudRunService:
    """A Cloud Run service of the workshop and the gcloud commands that manage it."""

    name: str = "yolo-backend"
    image: str = "europe-west1-docker.pkg.dev/PROJECT/yolo-service/backend:latest"
    region: str = "europe-west1"
    port: int = 8000
    memory: str = "2Gi"
    cpu: int = 2
    env: tuple[tuple[str, str], ...] = ()

    def deploy_command(self) -> list[str]:
        """``gcloud run deploy`` with the flags the workshop explains (port, memory, public access)."""
        command = [
            "gcloud",
            "run",
            "deploy",
            self.name,
            f"--image={self.image}",
            "--platform=managed",
            f"--region={self.region}",
            "--allow-unauthenticated",
            f"--port={self.port}",
            f"--memory={self.memory}",
            f"--cpu={self.cpu}",
        ]
        if self.env:
            command.append("--set-env-vars=" + ",".join(f"{k}={v}" for k, v in self.env))
        return command

    def url_command(self) -> list[str]:
        """Print the service's HTTPS URL."""
        return [
            "gcloud",
            "run",
            "services",
            "describe",
            self.name,
            f"--region={self.region}",
            "--format=value(status.url)",
        ]

    def delete_command(self) -> list[str]:
        """Delete the service (the workshop's clean-up step)."""
        return ["gcloud", "run", "services", "delete", self.name, f"--region={self.region}", "--quiet"]


def run_or_explain(command: list[str], available: bool, why: str, timeout: float = 900) -> int | None:
    """Run ``command`` when ``available``; otherwise print it and ``why`` it was not run.

    Returns:
        The exit code, or None when the command was not run.
    """
    text = shlex.join(command)
    if not available:
        print(f"not run ({why}). The command is:\n  {text}")
        return None
    print(f"$ {text}")
    return subprocess.run(command, timeout=timeout).returncode
