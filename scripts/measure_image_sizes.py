"""Estimate each image's installed size: its requirement set installed into a fresh virtualenv, measured.

No Docker engine is needed: every image is ``python:3.11-slim-bookworm`` plus its packages,
so the packages' installed size (site-packages after minus before) is what each image adds.

- after: ``requirements/{frontend,runtime,backend}.txt`` installed exactly as the Dockerfiles do
  (``pip install --no-deps -r``);
- before: the sets the old Dockerfiles installed (``.[serve]`` / ``.[ui]`` of the pyproject at
  ``--before-rev``, resolved offline by scripts/pin_requirements.py, opencv swapped for headless as
  the old Dockerfile did);
- CPU torch: PyTorch's CPU index is not reachable from every machine, so its size is ESTIMATED from
  the torch installed in this virtualenv, less its CUDA-only libraries (``*cuda*``, ``*nvshmem*``,
  ``*nvrtc*``); torchvision is counted as installed here.

Usage (downloads the wheels from PyPI once; takes a few minutes)::

    python scripts/measure_image_sizes.py [--work /tmp/image-sizes] [--json sizes.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import venv
from importlib.metadata import distribution
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pin_requirements as pins  # noqa: E402

ROOT = pins.ROOT
MB = 1e6


def tree_size(path: Path, skip: tuple[str, ...] = ()) -> int:
    """Bytes of the regular files under ``path`` (names containing a ``skip`` word left out)."""
    return sum(
        p.stat().st_size
        for p in path.rglob("*")
        if p.is_file() and not p.is_symlink() and not any(s in p.name for s in skip)
    )


def installed_size(name: str, requirements: list[str], work: Path) -> int:
    """Bytes that installing ``requirements`` (--no-deps, pinned) adds to a fresh virtualenv."""
    env = work / name
    shutil.rmtree(env, ignore_errors=True)  # always a fresh virtualenv
    venv.create(env, with_pip=True)
    site = next((env / "lib").glob("python*/site-packages"))
    req_file = work / f"{name}.txt"
    req_file.write_text("\n".join(requirements) + "\n")
    base = tree_size(site)
    subprocess.run(
        [
            env / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "-r",
            req_file,
        ],
        check=True,
    )
    return tree_size(site) - base


def cpu_torch_estimate() -> int:
    """Installed bytes of CPU-only torch + torchvision, estimated from this virtualenv's torch."""
    total = 0
    for name in pins.TORCH:
        dist = distribution(name)
        root = Path(dist.locate_file(name))
        total += tree_size(root, skip=("cuda", "nvshmem", "nvrtc"))
    return total


def requirement_lines(path: Path) -> list[str]:
    """The ``name==version`` lines of a requirement file."""
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def before_sets(rev: str) -> dict[str, list[str]]:
    """The old Dockerfiles' package sets, from the pyproject at ``rev`` (no build backend: it built in isolation)."""
    text = subprocess.run(
        ["git", "show", f"{rev}:pyproject.toml"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as handle:
        handle.write(text.stdout)
    constraint = pins.read_constraints()
    sets = {}
    for image, extra in (("backend", "serve"), ("frontend", "ui")):
        roots = [r for r in pins.pyproject_roots([extra], Path(handle.name)) if r.name != "setuptools"]
        closure = pins.resolve(roots)
        sets[image] = [f"{n}=={constraint[n]}" for n in sorted(closure.packages) if n not in pins.TORCH]
    Path(handle.name).unlink()
    return sets


def main(argv: list[str] | None = None) -> int:
    """Install each set, print a table of sizes (MB), optionally write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "image-sizes")
    parser.add_argument("--before-rev", default="78665e1", help="the commit of the old Dockerfiles")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    torch = cpu_torch_estimate()
    sizes: dict[str, float] = {"cpu_torch_estimate": torch / MB}
    after = {
        name: requirement_lines(ROOT / "requirements" / f"{name}.txt") for name in ("frontend", "runtime", "backend")
    }
    for name, lines in after.items():
        sizes[f"after/{name}"] = installed_size(f"after-{name}", lines, args.work) / MB
    for name, lines in before_sets(args.before_rev).items():
        sizes[f"before/{name}"] = installed_size(f"before-{name}", lines, args.work) / MB
    print(f"{'set':<22}{'installed MB':>14}")
    for key, value in sizes.items():
        print(f"{key:<22}{value:>14.0f}")
    print(
        f"backend images with CPU torch (estimate): before {sizes['before/backend'] + torch / MB:.0f} MB, "
        f"after (torch target) {sizes['after/backend'] + torch / MB:.0f} MB; "
        f"after (default runtime target, no torch) {sizes['after/runtime']:.0f} MB"
    )
    if args.json:
        args.json.write_text(json.dumps(sizes, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
