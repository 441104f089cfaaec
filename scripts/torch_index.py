"""Print PyTorch's CPU wheel index when it answers within a few seconds; else print nothing and say so on stderr.

``make install`` installs torch from the index this prints: the CPU build (a few hundred MB, against
several GB for the default CUDA build on Linux) where PyTorch's index is reachable, else the default
index (PyPI, or whatever pip's configuration names) with one line saying why. ``make install
TORCH_INDEX=URL`` (or ``TORCH_INDEX=`` for the default index) skips this probe.
"""

from __future__ import annotations

import sys
import urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def reachable(url: str, timeout: float) -> str | None:
    """None when ``url`` answers a HEAD request with 2xx/3xx within ``timeout`` seconds, else why not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as response:
            return None if response.status < 400 else f"HTTP {response.status}"
    except OSError as exc:  # URLError, timeouts, DNS failures: all mean "not from here"
        return str(getattr(exc, "reason", exc))


def main(timeout: float = 3.0) -> int:
    why = reachable(f"{CPU_INDEX}/torch/", timeout)
    if why is None:
        print(CPU_INDEX)
    else:
        print(
            f"make install: PyTorch's CPU index is not reachable ({why}): torch comes from the default index",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
