"""Audit the pinned dependency set (``constraints.txt``) for known vulnerabilities with pip-audit.

Run by ``make lint``, never by pytest (tests stay offline). pip-audit asks an advisory
source (PyPI's JSON API by default) about each pinned version. Where none can answer,
this script says why and exits 0, so an offline check still passes; it fails (exit 1)
only on a known vulnerability. It never claims "no vulnerabilities" for versions the
source could not check: it prints how many it audited and how many it skipped.

    python scripts/audit_dependencies.py [constraints.txt] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

SOURCE = "https://pypi.org/pypi/pip/json"  # pip-audit's default service: PyPI's JSON API


def pip_audit() -> list[str]:
    """The pip-audit command of this Python's environment."""
    candidate = Path(sys.executable).parent / "pip-audit"
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "pip_audit"]


def source_unreachable(timeout: float) -> str | None:
    """Why the advisory source cannot be asked, or None when it answers."""
    try:
        with urllib.request.urlopen(SOURCE, timeout=timeout) as response:
            response.read(1)
    except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
        return f"{SOURCE} does not answer ({exc})"
    return None


def main() -> int:
    """Audit, then print one summary line (and each vulnerability); the exit code is for make."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", nargs="?", default="constraints.txt")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per advisory request")
    args = parser.parse_args()

    reason = source_unreachable(min(args.timeout, 5.0))
    if reason:
        print(f"pip-audit skipped: no advisory source is reachable: {reason}")
        return 0
    # --no-deps --disable-pip: audit exactly the pinned versions, without resolving or installing anything.
    command = [*pip_audit(), "-r", args.requirements, "--no-deps", "--disable-pip", "--format", "json"]
    command += ["--progress-spinner", "off", "--timeout", str(int(args.timeout))]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=300)
        report = json.loads(run.stdout)
    except subprocess.TimeoutExpired:
        print("pip-audit skipped: the advisory source did not answer within 300 s")
        return 0
    except json.JSONDecodeError:
        print(f"pip-audit failed to run:\n{run.stderr.strip()}")
        return 1

    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if "skip_reason" in d]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    audited = len(dependencies) - len(skipped)
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "none yet"
            print(f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in: {fixes})")
    if audited == 0:
        print(
            f"pip-audit skipped: the advisory source knows none of the {len(dependencies)} pinned versions "
            f"(e.g. {skipped[0]['skip_reason']})"
        )
        return 0
    print(
        f"pip-audit: {audited} pinned packages audited, {len(skipped)} skipped (unknown to the advisory source), "
        f"{sum(len(d['vulns']) for d in vulnerable)} known vulnerabilities"
    )
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
