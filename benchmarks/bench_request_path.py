"""What ``/predict`` costs around the model (a benchmark: prints, asserts nothing).

One ``yolo-service serve`` on the default engine (``auto``), the bundled weights at 640 px, a 640x480
JPEG. Each run calls, in turns, the runtime's inference alone (on a tensor letterboxed once), the
whole in-process ``predict_image`` and ``/predict`` over HTTP (JSON, base64), one at a time; the
figure is ``/predict`` p50 minus the inference's p50 (the bench's ``_predict_vs_inprocess``).
Several runs, because one run's figure moves by a millisecond from one run to the next here.

Run from the repository root (say whether the machine was shared):

    PYTHONPATH=$PWD YOLO_SERVICE_OFFLINE=1 .venv/bin/python benchmarks/bench_request_path.py --runs 6 --turns 150
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from yolo_service.workshop.bench import _predict_vs_inprocess, _Run, cpu_flags, export_640


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="measurements, each on its own turns")
    parser.add_argument("--turns", type=int, default=150, help="calls of each kind per measurement")
    args = parser.parse_args()

    weights = Path(tempfile.mkdtemp(prefix="yolo-service-request-path-"))
    try:
        run = _Run(weights, quick=False, progress=tqdm(disable=True))
        export_640(weights)
        flags = ", ".join(name for name, present in cpu_flags().items() if present) or "none of those looked for"
        print(f"CPU flags: {flags}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at the start")
        around = []
        with run.server("auto") as server:
            server.wait_for("/ready")
            time.sleep(2)  # the exported engine's throughput compilation finishes in the background
            for index in range(args.runs):
                figures = _predict_vs_inprocess(server.url, run.jpeg, run.image, run.settings("auto"), args.turns)
                around.append(figures["around_inference_ms"])
                print(
                    f"run {index + 1}: inference {figures['inference_p50_ms']:.1f} ms, in-process "
                    f"{figures['inprocess_p50_ms']:.1f} ms, /predict {figures['predict_p50_ms']:.1f} ms p50: "
                    f"{figures['around_inference_ms']:.2f} ms around the inference"
                )
        print(
            f"around the inference: {min(around):.2f}-{max(around):.2f} ms over {args.runs} runs "
            f"(median {statistics.median(around):.2f}); load average {os.getloadavg()[0]:.2f} at the end"
        )
    finally:
        shutil.rmtree(weights, ignore_errors=True)


if __name__ == "__main__":
    main()
