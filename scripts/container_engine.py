"""A container engine for the image tests: Docker when its daemon answers, else podman, set up if need be.

`make test` builds and runs the kit's images (tests/e2e/test_images.py). A Codespace or a CI runner with
Docker uses Docker. A machine without a Docker daemon (a Debian box, this kit's own test machine) gets
podman from Debian's packages, configured for a host without systemd, and, when the official
``python:3.11-slim-bookworm`` image cannot be pulled (no route to Docker Hub), a stand-in for it built
from Debian bookworm's own Python 3.11 with mmdebstrap, tagged with the official name so that the
Dockerfiles build unmodified. Whatever is used is printed, the stand-in included.

    python scripts/container_engine.py        # set up and say what will be used (`make container-deps`)

It only installs or configures what is missing, so a second run takes a second or two. What it writes:
``/etc/containers/containers.conf`` (only when absent, or written by this script before), and a cache
under ``~/.cache/yolo-service/containers`` (the stand-in's root filesystem, ~150 MB, and a pip.conf).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The base image of both Dockerfiles (a test holds them equal).
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
#: A label on the stand-in base image; images built on it inherit it, so they say so too.
STAND_IN_LABEL = "io.yolo-service.stand-in"
DEBIAN_PACKAGES = ["podman", "buildah", "runc", "netavark", "aardvark-dns", "mmdebstrap", "podman-compose"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yolo-service" / "containers"
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# runc and cgroupfs: crun fails on hosts with hybrid cgroups (v1 and v2 mounted) and there is no systemd to
# manage cgroups; netavark + aardvark-dns: the compose services find each other by name (CNI needs a plug-in);
# builds on the host's network (pip reaches PyPI through whatever proxy the host uses); no default ulimits
# (raising nofile is refused inside some sandboxes).
PODMAN_CONF = """\
# Written by yolo-service's scripts/container_engine.py (it rewrites this file only while this line is here).
[containers]
default_ulimits = []
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"

[network]
network_backend = "netavark"
"""
CONF_MARK = PODMAN_CONF.splitlines()[0]

# Debian bookworm's python3.11 with pip, as small as the official slim image: no recommends, no
# documentation, no locales, merged /usr without the usrmerge package (which pulls in perl).
MMDEBSTRAP = [
    "mmdebstrap",
    "--variant=minbase",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--aptopt=APT::Install-Recommends false",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd",
    "bookworm",
]
DEBIAN_SOURCES = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]
# The official image's conventions on top: pip and python on PATH, pip allowed to install as root.
STAND_IN_CONTAINERFILE = f"""\
FROM localhost/yolo-service-stand-in:rootfs
RUN rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED && ln -sf /usr/bin/pip3 /usr/local/bin/pip
ENV LANG=C.UTF-8
LABEL {STAND_IN_LABEL}="Debian bookworm's python3.11 (mmdebstrap), standing in for {BASE_IMAGE}"
CMD ["python3"]
"""


class EngineUnavailable(RuntimeError):
    """No container engine answers here and none could be installed: the reason says why."""


@dataclass
class Engine:
    """The engine the image tests drive, and how to build with it on this host."""

    name: str  # "docker" or "podman"
    compose: list[str] | None  # ["docker", "compose"] (v2) or ["podman-compose"]; None: no compose tool
    stand_in: str | None = None  # what stands in for the official base image, if anything
    build_options: list[str] = field(default_factory=list)  # host-specific options for every build
    build_env: dict[str, str] = field(default_factory=dict)  # environment of builds (compose's too)

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``ENGINE args…`` and return its output (raises with the output when it fails and ``check``)."""
        result = subprocess.run([self.name, *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def build_command(
        self,
        context: Path,
        dockerfile: str,
        tag: str,
        target: str | None = None,
        build_args: dict[str, str] | None = None,
    ) -> list[str]:
        """The build command line for ``dockerfile`` (relative to ``context``) tagged ``tag``."""
        command = [self.name, "build", *self.build_options, "-f", str(context / dockerfile), "-t", tag]
        ignore = context / f"{dockerfile}.dockerignore"
        if self.name == "podman" and ignore.is_file():
            command += ["--ignorefile", str(ignore)]  # BuildKit finds it by name; buildah 1.28 must be told
        if target:
            command += ["--target", target]
        for key, value in (build_args or {}).items():
            command += ["--build-arg", f"{key}={value}"]
        return [*command, str(context)]

    def describe(self) -> str:
        """One line: the engine, its compose tool and the base image used."""
        compose = " ".join(self.compose) if self.compose else "no compose tool"
        base = f"stand-in base image ({self.stand_in})" if self.stand_in else f"official base image {BASE_IMAGE}"
        return f"container engine: {self.name}, {compose}; {base}"


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str] | None:
    """Run ``argv``; None when it is not installed or times out."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _succeeds(argv: list[str], timeout: float = 60) -> bool:
    """True when ``argv`` is installed and exits 0."""
    result = _run(argv, timeout)
    return result is not None and result.returncode == 0


def _installed(package: str) -> bool:
    """True when the Debian package is installed (not merely known, or removed with its configuration left)."""
    result = _run(["dpkg-query", "-W", "-f=${db:Status-Status}", package])
    return result is not None and result.stdout == "installed"


def _as_root(argv: list[str]) -> list[str]:
    """``argv`` as root: directly, or through ``sudo -n`` (never a password prompt)."""
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo") is None:
        raise EngineUnavailable(f"not root and no sudo: cannot run {' '.join(argv)}")
    return ["sudo", "-n", *argv]


def docker_engine() -> Engine | None:
    """Docker, when a daemon answers (``docker info``), with Compose v2 when its plug-in is there."""
    info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
    if info is None or info.returncode != 0:
        return None
    compose = _run(["docker", "compose", "version"])
    return Engine("docker", ["docker", "compose"] if compose and compose.returncode == 0 else None)


def install_podman() -> None:
    """Install the missing podman packages from Debian (apt-get, as root)."""
    missing = [package for package in DEBIAN_PACKAGES if not _installed(package)]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise EngineUnavailable(f"no Docker daemon answers, and no apt-get to install {', '.join(missing)}")
    print(f"installing from Debian: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    for argv in (["apt-get", "update", "-qq"], install):
        result = subprocess.run(_as_root(argv), capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise EngineUnavailable(f"{' '.join(argv)} failed: {result.stderr.strip()[-500:]}")


def configure_podman() -> None:
    """Write ``containers.conf`` for a host without systemd, unless someone else wrote one."""
    current = CONTAINERS_CONF.read_text() if CONTAINERS_CONF.is_file() else None
    if current == PODMAN_CONF:
        return
    if current is not None and CONF_MARK not in current:
        print(f"note: keeping {CONTAINERS_CONF} (not written by this script)", flush=True)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as tmp:
        tmp.write(PODMAN_CONF)
    written = subprocess.run(
        _as_root(["install", "-D", "-m", "644", tmp.name, str(CONTAINERS_CONF)]), capture_output=True, text=True
    )
    os.unlink(tmp.name)
    if written.returncode != 0:
        raise EngineUnavailable(f"cannot write {CONTAINERS_CONF}: {written.stderr.strip()[-500:]}")
    # A bridge CNI left behind (podman used before with CNI) holds netavark's subnet: remove it.
    if _succeeds(["ip", "link", "show", "cni-podman0"]):
        subprocess.run(_as_root(["ip", "link", "delete", "cni-podman0"]), check=False)
    print(f"wrote {CONTAINERS_CONF}: runc, cgroupfs, netavark", flush=True)


def podman_engine() -> Engine:
    """podman, installed and configured if need be, with this host's build options."""
    if shutil.which("podman") is None or shutil.which("podman-compose") is None or shutil.which("mmdebstrap") is None:
        install_podman()
    configure_podman()
    info = _run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"])
    if info is None or info.returncode != 0:
        raise EngineUnavailable(f"podman does not work here: {(info.stderr if info else 'not found').strip()[-500:]}")
    CACHE.mkdir(parents=True, exist_ok=True)
    # --network host: RUN steps reach PyPI the way the host does. The host's CA bundle (and a pip.conf
    # naming it) is mounted into each RUN, not copied into the image: behind a TLS-inspecting proxy pip
    # would otherwise refuse PyPI's certificate. BUILDAH_FORMAT=docker keeps HEALTHCHECK (OCI has no such
    # field), for podman-compose's builds too.
    options = ["--network", "host"]
    if HOST_CA_BUNDLE.is_file():
        pip_conf = CACHE / "pip.conf"
        pip_conf.write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n")
        options += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro"]
    compose = ["podman-compose"] if shutil.which("podman-compose") else None
    return Engine("podman", compose, build_options=options, build_env={"BUILDAH_FORMAT": "docker"})


def stand_in_of(engine: Engine) -> str | None:
    """The stand-in label of the local base image (None: the official image, or no image)."""
    result = engine("image", "inspect", BASE_IMAGE, check=False)
    if result.returncode != 0:
        return None
    (image,) = json.loads(result.stdout)
    labels = (image.get("Config") or {}).get("Labels") or {}
    return labels.get(STAND_IN_LABEL)


def build_stand_in(engine: Engine) -> str:
    """Build the stand-in base image from a cached (or new) Debian bookworm root filesystem."""
    rootfs = CACHE / "bookworm-python3.11.tar"
    if not rootfs.is_file():
        print(f"building a Debian bookworm root filesystem with python3.11 (mmdebstrap, ~2 min): {rootfs}", flush=True)
        partial = rootfs.with_suffix(".partial.tar")
        result = subprocess.run([*MMDEBSTRAP, str(partial), *DEBIAN_SOURCES], capture_output=True, text=True)
        if result.returncode != 0:
            raise EngineUnavailable(f"mmdebstrap failed: {result.stderr.strip()[-1000:]}")
        partial.rename(rootfs)
    engine("import", str(rootfs), "localhost/yolo-service-stand-in:rootfs", timeout=300)
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Containerfile").write_text(STAND_IN_CONTAINERFILE)
        engine("build", "--format", "docker", "-t", BASE_IMAGE, context, timeout=300)
    return stand_in_of(engine) or "stand-in"


def ensure_base_image(engine: Engine) -> None:
    """The official base image if it is here or can be pulled; else the stand-in (said in ``engine.stand_in``)."""
    if engine("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        engine.stand_in = stand_in_of(engine)
        return
    pulled = engine("pull", BASE_IMAGE, check=False, timeout=600)
    if pulled.returncode == 0:
        return
    reason = (pulled.stderr.strip().splitlines() or ["no answer"])[-1]
    print(f"cannot pull {BASE_IMAGE} ({reason[:200]}): building a stand-in", flush=True)
    if engine.name != "podman" or shutil.which("mmdebstrap") is None:
        raise EngineUnavailable(f"{BASE_IMAGE} cannot be pulled and no stand-in can be built: {reason}")
    engine.stand_in = build_stand_in(engine)


def ensure_engine() -> Engine:
    """A working engine with the base image present, set up if need be.

    Raises:
        EngineUnavailable: no engine answers and none can be installed (the message says why).
    """
    engine = docker_engine() or podman_engine()
    ensure_base_image(engine)
    return engine


def main() -> int:
    """Set up an engine and print what the image tests will use."""
    start = time.monotonic()
    try:
        engine = ensure_engine()
    except EngineUnavailable as exc:
        print(f"no container engine: {exc}", file=sys.stderr)
        return 1
    print(f"{engine.describe()} (ready in {time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
