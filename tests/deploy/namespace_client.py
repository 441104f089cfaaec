"""Runs INSIDE the test's fresh user, network and PID namespaces (tests/deploy/test_namespace.py).

As the namespace's root it brings up ``lo`` (the only interface: no network at all), then starts the
image's CMD as uid 10001 in a nested user namespace (no capabilities, so read-only files stay
read-only), talks to it over loopback, sends SIGTERM and times the exit. It prints one JSON line.
Standard library only: it must not import the package under test.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request


def request(url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict | str]:
    """GET (or POST JSON) ``url``; the status and the decoded body, errors included."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def main() -> int:
    """Start, probe, predict, stop; print what happened as JSON."""
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    result: dict = {}
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open("/proc/self/net/dev") as handle:  # this network namespace's interfaces (/sys shows the host's)
        result["interfaces"] = sorted(line.split(":")[0].strip() for line in handle.readlines()[2:])
    as_app_user = ["unshare", "--user", "--map-user=10001", "--map-group=10001", "--"]
    env = config["env"]
    probe = (
        "import os, yolo_service; print(yolo_service.__file__, os.getuid(), os.access(yolo_service.__file__, os.W_OK))"
    )
    cwd = config["cwd"]  # the image's WORKDIR
    where = subprocess.run(
        [*as_app_user, config["python"], "-c", probe], env=env, cwd=cwd, capture_output=True, text=True
    )
    result["package"] = where.stdout.split() or [where.stderr[-500:]]
    url = f"http://127.0.0.1:{env['PORT']}"
    with open(config["log"], "w") as log:
        started = time.monotonic()
        server = subprocess.Popen(
            [*as_app_user, *config["argv"]], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
        )
        try:
            while time.monotonic() - started < config["ready_timeout"] and server.poll() is None:
                try:
                    if request(url + "/ready", timeout=2)[0] == 200:
                        result["ready_after"] = round(time.monotonic() - started, 2)
                        break
                except OSError:  # not listening yet
                    pass
                time.sleep(0.25)
            if "ready_after" in result:
                result["default"] = request(url + "/models/yolo26n")[1]
                result["predict"] = request(url + "/predict", {"model": "shapes", "image": config["image"]})
                result["not_baked"] = request(url + "/predict", {"model": "yolo11m", "image": config["image"]})
        finally:
            stopping = time.monotonic()
            server.send_signal(signal.SIGTERM)
            try:
                result["returncode"] = server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                result["returncode"] = server.wait()
            result["exit_after_sigterm"] = round(time.monotonic() - stopping, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
