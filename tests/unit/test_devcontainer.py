"""The Codespace configuration is valid, runs commands that exist, forwards the kit's ports, installs CPU torch."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest

from tests.helpers import ROOT
from yolo_service.cli import build_parser
from yolo_service.config import Settings

DEVCONTAINER = ROOT / ".devcontainer" / "devcontainer.json"
MAKEFILE = (ROOT / "Makefile").read_text()
CPU_TORCH = "https://download.pytorch.org/whl/cpu"


def strip_jsonc(text: str) -> str:
    """JSON with comments (and trailing commas) to plain JSON; ``//`` inside strings (URLs) is kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i : end + 1])
            i = end + 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            out.append(char)
            i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def test_strip_jsonc_keeps_urls_and_drops_comments_and_trailing_commas():
    text = '{\n  // a comment\n  "url": "https://x.org/a//b", /* block */ "list": [1, 2,],\n}'
    assert json.loads(strip_jsonc(text)) == {"url": "https://x.org/a//b", "list": [1, 2]}


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads(strip_jsonc(DEVCONTAINER.read_text()))


def make_target_exists(target: str) -> bool:
    return re.search(rf"^{re.escape(target)}:", MAKEFILE, re.M) is not None


def test_python_311_image_with_docker_and_gcloud(config):
    assert re.search(r"python:[\w.-]*3\.11", config["image"]), config["image"]
    features = " ".join(config["features"])
    assert "ghcr.io/devcontainers/features/docker-in-docker:" in features
    assert "google-cloud-cli" in features or "gcloud" in features
    assert config["hostRequirements"]["cpus"] >= 4


def test_its_commands_exist_in_the_repository(config):
    commands = []
    for key in ("onCreateCommand", "updateContentCommand", "postCreateCommand", "postStartCommand"):
        value = config.get(key)
        if isinstance(value, dict):
            commands += [" ".join(v) if isinstance(v, list) else v for v in value.values()]
        elif value:
            commands.append(" ".join(value) if isinstance(value, list) else value)
    assert commands
    for command in commands:
        for part in re.split(r"&&|;|\|\|", command):
            argv = shlex.split(part)
            if argv[0] == "make":
                targets = [a for a in argv[1:] if "=" not in a and not a.startswith("-")]
                assert targets and all(make_target_exists(t) for t in targets), part
            else:  # a script of the repository
                assert (ROOT / argv[0]).is_file(), part


def test_the_install_is_prebuilt_and_waited_for(config):
    """Prebuilds run onCreate/updateContent, never postCreate; VS Code opens once `waitFor` is done."""
    assert "postCreateCommand" not in config and "make install" in config["updateContentCommand"]
    assert config["waitFor"] == "updateContentCommand"


def test_current_majors_of_the_image_and_the_docker_feature(config):
    assert config["image"] == "mcr.microsoft.com/devcontainers/python:3-3.11-bookworm"
    assert "ghcr.io/devcontainers/features/docker-in-docker:3" in config["features"]


def test_its_commands_are_safe_to_run_again(config):
    """ "Rebuild Container" runs them again on the learner's files: they must keep the learner's notebooks."""
    command = config["updateContentCommand"]
    assert "make student" in command
    assert "FORCE" not in command and "RESET" not in command and "--force" not in command
    # make student keeps existing copies (tests/notebooks/test_student_copies.py); make install is a stamp file.
    assert re.search(r"^install: \$\(STAMP\)$", MAKEFILE, re.M)


def test_it_installs_the_cpu_only_torch(config):
    assert f"make install TORCH_INDEX={CPU_TORCH}" in config["updateContentCommand"]
    # ... and the Makefile really installs torch from that index.
    assert "$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PINS)" in MAKEFILE


def kit_ports() -> dict[int, str]:
    """The ports the kit listens on, read from the code, not from the devcontainer."""
    up = build_parser()._subparsers._group_actions[0].choices["up"]
    defaults = {action.dest: action.default for action in up._actions}
    assert defaults["api_port"] == Settings.model_fields["port"].default
    lab = re.search(r"^lab:.*\n\t.*jupyter lab .*--port=(\d+)", MAKEFILE, re.M)
    assert lab, "make lab runs jupyter lab on a fixed port"
    return {defaults["api_port"]: "API", defaults["ui_port"]: "UI", int(lab.group(1)): "JupyterLab"}


def test_it_forwards_exactly_the_kits_ports_with_labels(config):
    ports = kit_ports()
    assert ports == {8000: "API", 8501: "UI", 8888: "JupyterLab"}
    assert sorted(config["forwardPorts"]) == sorted(ports)
    labels = {int(port): attributes["label"] for port, attributes in config["portsAttributes"].items()}
    assert sorted(labels) == sorted(ports)
    for port, name in ports.items():
        assert labels[port].startswith(name), labels[port]


def test_vscode_has_the_python_jupyter_and_docker_extensions(config):
    extensions = config["customizations"]["vscode"]["extensions"]
    assert {"ms-python.python", "ms-toolsai.jupyter", "ms-azuretools.vscode-docker"} <= set(extensions)
    assert config["remoteEnv"]["PATH"].startswith("${containerWorkspaceFolder}/.venv/bin:")


def test_make_lab_serves_jupyterlab_for_a_forwarded_port():
    recipe = re.search(r"^lab:.*\n\t(.*)", MAKEFILE, re.M).group(1)
    assert "--ip=0.0.0.0" in recipe and "--no-browser" in recipe
    # In a Codespace the browser's origin is the forwarded URL, which JupyterLab refuses unless allowed.
    assert "--ServerApp.allow_origin=$(LAB_ORIGIN)" in recipe


def test_make_lab_allows_exactly_the_codespace_forwarded_origin():
    def lab_command(env: dict[str, str]) -> str:
        result = subprocess.run(
            ["make", "-n", "lab", "-o", "install", "-o", "student"],
            cwd=ROOT,
            env={"PATH": os.environ["PATH"], **env},
            capture_output=True,
            text=True,
        )
        return result.stdout

    codespace = {"CODESPACE_NAME": "octocat-space-x1", "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev"}
    assert "--ServerApp.allow_origin=https://octocat-space-x1-8888.app.github.dev" in lab_command(codespace)
    assert "allow_origin" not in lab_command({})  # elsewhere: JupyterLab's default (same origin only)
