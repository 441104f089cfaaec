"""Generate each image's fully pinned requirement file from ``pyproject.toml`` extras and ``constraints.txt``.

The images install their third-party packages with ``pip install --no-deps -r requirements/NAME.txt``
before any of the kit's code is copied, so each file must hold the whole dependency closure, pinned.
The closure is resolved OFFLINE, from the installed virtualenv's metadata (``importlib.metadata``:
each distribution's ``Requires-Dist`` with its markers evaluated for the image's platform, Linux
x86_64 CPython 3.11), so neither this script nor the test that keeps the files in sync touches the
network. Versions come from ``constraints.txt``; a package it does not pin is an error.

Three rules make the images smaller than what pip would resolve:
- ``opencv-python`` (Ultralytics' requirement, needs libGL) becomes ``opencv-python-headless``;
- ``torch`` and ``torchvision`` go to ``requirements/torch.txt``, installed ``--no-deps`` from
  PyTorch's CPU index; their own requirements stay in the image's file;
- CUDA-only packages (``nvidia-*`` libraries, ``cuda-*``, ``triton``) are dropped: the CPU build needs none.

Usage::

    python scripts/pin_requirements.py          # write requirements/*.txt
    python scripts/pin_requirements.py --check  # exit 1 if a file is out of date
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "yolo-service"
#: The platform every image runs on (Cloud Run: linux/amd64), for evaluating markers.
IMAGE_ENVIRONMENT = {
    "implementation_name": "cpython",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "os_name": "posix",
    "python_full_version": "3.11.15",
    "python_version": "3.11",
    "sys_platform": "linux",
}
SUBSTITUTES = {"opencv-python": "opencv-python-headless"}
TORCH = ("torch", "torchvision")  # installed --no-deps from PyTorch's CPU index (requirements/torch.txt)
NVIDIA_KEEP = {"nvidia-ml-py"}  # pure-Python NVML bindings that Ultralytics requires on every platform

#: Each image's requirement set: pyproject extras of the kit, plus extra roots. The kit's build
#: backend (pyproject's build-system) is in every set: the kit installs with --no-build-isolation.
IMAGES: dict[str, dict] = {
    "backend": {"extras": ["serve"], "roots": [], "doc": "the torch target and the builder (PyTorch engine)"},
    "export": {
        "extras": [],
        "roots": ["ultralytics[export-base]"],
        "minus": "backend",
        "doc": "what the builder adds to the backend set to export ONNX (Ultralytics' export-base extra)",
    },
    "runtime": {"extras": ["runtime"], "roots": [], "doc": "the slim runtime target: exported-model engines, no torch"},
    "frontend": {"extras": ["ui"], "roots": [], "doc": "the Streamlit UI: no torch, no model"},
}


def is_cuda_only(name: str) -> bool:
    """True for packages only a CUDA build of torch needs."""
    return (name.startswith("nvidia-") and name not in NVIDIA_KEEP) or name.startswith("cuda-") or name == "triton"


def read_constraints(path: Path = ROOT / "constraints.txt") -> dict[str, str]:
    """``constraints.txt`` as {canonical name: version}."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def pyproject_roots(extras: list[str], path: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """The kit's core requirements, those of ``extras`` (self-references expanded) and its build backend."""
    project = tomllib.loads(path.read_text())
    optional = project["project"].get("optional-dependencies", {})
    roots = [Requirement(r) for r in project["project"]["dependencies"]]
    roots += [
        Requirement(r) for r in project["build-system"]["requires"] if canonicalize_name(Requirement(r).name) != "wheel"
    ]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == PROJECT:
                todo.extend(req.extras)
            else:
                roots.append(req)
    return roots


@dataclass
class Closure:
    """A resolved requirement set: every package, who asks for it and with which specifiers."""

    packages: dict[str, list[Requirement]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # required, but not installed here: cannot resolve offline


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**IMAGE_ENVIRONMENT, "extra": extra}) for extra in (extras or {""}) | {""})


def resolve(roots: list[Requirement]) -> Closure:
    """The dependency closure of ``roots`` from installed metadata, with the image's substitutions."""
    closure = Closure()
    todo = [(req, set()) for req in roots]
    expanded: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent_extras = todo.pop()
        if not _applies(req, parent_extras):
            continue
        name = canonicalize_name(req.name)
        if is_cuda_only(name):
            continue
        metadata_name = name
        if name in SUBSTITUTES:  # same requirements, other build: read the original's metadata if needed
            name = SUBSTITUTES[name]
            req = Requirement(f"{name}{req.specifier}")
        closure.packages.setdefault(name, []).append(req)
        key = (name, frozenset(req.extras))
        if key in expanded:
            continue
        expanded.add(key)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            try:
                dist = distribution(metadata_name)
            except PackageNotFoundError:
                closure.missing.add(name)
                continue
        todo.extend((Requirement(text), set(req.extras)) for text in dist.requires or [])
    return closure


def image_closure(image: str) -> Closure:
    """The closure of one image's requirement set (see :data:`IMAGES`)."""
    spec = IMAGES[image]
    roots = [Requirement(r) for r in spec["roots"]]
    if spec["extras"] or not spec["roots"]:
        roots = pyproject_roots(spec["extras"]) + roots
    closure = resolve(roots)
    if "minus" in spec:
        for name in image_closure(spec["minus"]).packages:
            closure.packages.pop(name, None)
    return closure


def problems(closure: Closure, pins: dict[str, str]) -> list[str]:
    """What makes a closure uninstallable from the pinned set: unpinned, uninstalled or conflicting packages."""
    found = [f"{name}: required but not installed here (cannot resolve offline)" for name in sorted(closure.missing)]
    for name, reqs in sorted(closure.packages.items()):
        if name not in pins:
            found.append(f"{name}: not pinned in constraints.txt (required as {', '.join(map(str, reqs))})")
            continue
        version = Version(pins[name])
        for req in reqs:
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                found.append(f"{name}=={version} does not satisfy {req}")
    return found


def render(image: str, names: list[str], pins: dict[str, str]) -> str:
    """The text of ``requirements/IMAGE.txt``."""
    header = [
        f"# {IMAGES[image]['doc'] if image in IMAGES else image}",
        "# Generated by scripts/pin_requirements.py from pyproject.toml and constraints.txt: do not edit.",
        "# Installed with pip install --no-deps: this is the whole closure, every version pinned.",
    ]
    return "\n".join(header + [f"{name}=={pins.get(name, 'UNPINNED')}" for name in sorted(names)]) + "\n"


def generate() -> dict[str, str]:
    """Every requirement file's text, by file name; raises SystemExit listing the problems, if any."""
    pins = read_constraints()
    files, errors = {}, []
    for image in IMAGES:
        closure = image_closure(image)
        errors += [f"{image}: {p}" for p in problems(closure, pins)]
        names = [n for n in closure.packages if n not in TORCH]
        files[f"{image}.txt"] = render(image, names, pins)
    files["torch.txt"] = (
        "# CPU-only torch, installed with --no-deps --index-url https://download.pytorch.org/whl/cpu\n"
        "# (its requirements are in backend.txt). Generated by scripts/pin_requirements.py: do not edit.\n"
        + "".join(f"{name}=={pins[name]}\n" for name in TORCH)
    )
    if errors:
        raise SystemExit("cannot pin the images' requirements:\n  " + "\n  ".join(errors))
    return files


def main(argv: list[str] | None = None) -> int:
    """Write requirements/*.txt, or with --check, report the files that are out of date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file differs; write nothing")
    args = parser.parse_args(argv)
    out = ROOT / "requirements"
    stale = []
    for name, text in generate().items():
        path = out / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            out.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python scripts/pin_requirements.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
