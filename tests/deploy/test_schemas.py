"""The compose file, ``cloudbuild.yaml`` and the CI workflows against their published JSON schemas, offline.

check-jsonschema vendors the Compose Specification's, Cloud Build's and GitHub Actions' schemas,
so no test touches the network; each validation is also shown failing on a broken copy.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.helpers import ROOT, executable
from yolo_service.workshop.deploy import compose_up_command

SCHEMAS = {
    "vendor.compose-spec": ["docker-compose.yml"],
    "vendor.cloudbuild": ["cloudbuild.yaml"],
    "vendor.github-workflows": [str(p.relative_to(ROOT)) for p in sorted((ROOT / ".github/workflows").glob("*.yml"))],
}


def validate(schema: str, *paths: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with a vendored schema (offline); one process for all the files of a schema."""
    return subprocess.run(
        [executable("check-jsonschema"), "--builtin-schema", schema, *map(str, paths)], capture_output=True, text=True
    )


@pytest.mark.parametrize("schema", SCHEMAS)
def test_files_match_their_schema(schema):
    assert SCHEMAS[schema]
    result = validate(schema, *(ROOT / name for name in SCHEMAS[schema]))
    assert result.returncode == 0, result.stdout + result.stderr


def _vendored(schema: str) -> dict:
    """The schema check-jsonschema ships, loaded in-process (the negative checks below need no subprocess)."""
    import check_jsonschema

    name = schema.removeprefix("vendor.") + ".json"
    return json.loads((Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / name).read_text())


@pytest.mark.parametrize(
    ("name", "schema", "break_it"),
    [
        ("docker-compose.yml", "vendor.compose-spec", lambda d: d["services"]["backend"].update(depends_on=7)),
        ("cloudbuild.yaml", "vendor.cloudbuild", lambda d: d.update(steps={"not": "a list"})),
        (".github/workflows/ci.yml", "vendor.github-workflows", lambda d: d["jobs"]["test"].pop("runs-on")),
    ],
)
def test_the_schemas_catch_a_broken_file(name, schema, break_it):
    vendored = _vendored(schema)
    validator = jsonschema.validators.validator_for(vendored)(vendored)
    data = yaml.safe_load((ROOT / name).read_text())
    if True in data:  # PyYAML reads YAML 1.1, where a workflow's `on:` key is the boolean true
        data["on"] = data.pop(True)
    assert not list(validator.iter_errors(data))  # the real file is valid in-process too
    break_it(data)
    assert list(validator.iter_errors(data))


def test_compose_wires_the_services():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["frontend"]["environment"]["BACKEND_URL"] == "http://backend:8000"
    assert services["frontend"]["depends_on"]["backend"]["condition"] == "service_healthy"
    assert services["backend"]["healthcheck"]["test"] == ["CMD", "yolo-service", "healthcheck", "--path", "/ready"]
    assert services["backend"]["build"] == {
        "context": ".",
        "dockerfile": "backend/Dockerfile",
        "target": "runtime",
        "args": {"MODEL": "${MODEL:-yolo26n}"},  # passed even when it is the default: buildah needs it
    }
    assert services["backend"]["ports"] == ["127.0.0.1:${BACKEND_PORT:-8000}:8000"]  # this machine only
    assert services["frontend"]["ports"] == ["127.0.0.1:${FRONTEND_PORT:-8501}:8501"]
    assert services["frontend"]["build"]["dockerfile"] == "frontend/Dockerfile"
    assert compose_up_command()[compose_up_command().index("-f") + 1] == "docker-compose.yml"


def test_cloud_build_builds_both_images_for_amd64_and_pushes_them():
    config = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    dockerfiles = {
        arg.split("=", 1)[1] for step in config["steps"] for arg in step["args"] if arg.startswith("--file=")
    }
    assert dockerfiles == {"backend/Dockerfile", "frontend/Dockerfile"}
    assert all("--platform=linux/amd64" in step["args"] for step in config["steps"])
    tags = {arg.split("=", 1)[1] for step in config["steps"] for arg in step["args"] if arg.startswith("--tag=")}
    assert tags == set(config["images"])  # what is built is what is pushed


def test_ci_runs_the_readme_test_command_and_builds_both_images():
    assert "make test" in (ROOT / "README.md").read_text()
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(run.startswith("make test") for run in runs)
    builds = [
        step["with"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "build-push-action" in step.get("uses", "")
    ]
    matrix = workflow["jobs"]["images"]["strategy"]["matrix"]["include"]
    assert {m["dockerfile"] for m in matrix} == {"backend/Dockerfile", "frontend/Dockerfile"}
    assert builds and all(b["platforms"] == "linux/amd64" for b in builds)
