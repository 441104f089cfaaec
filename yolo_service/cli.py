"""The ``yolo-service`` command line: serve, ui, up, predict, check, healthcheck, models, samples, download,
export, bench, train-demo.

Each command is a few lines over the library; heavy imports (torch, uvicorn,
streamlit) happen inside the command that needs them, so ``yolo-service --help``
and ``yolo-service check`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, logs
from .config import get_settings
from .errors import YoloServiceError

if TYPE_CHECKING:
    from PIL import Image

    from .schema import PredictResponse


__all__ = ["main"]


def _frontend_script() -> Path | None:
    """``frontend/app.py`` in the working directory (containers) or next to the package (a clone)."""
    for root in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (root / "frontend" / "app.py").is_file():
            return root / "frontend" / "app.py"
    return None


def _streamlit_argv(script: Path, port: int, address: str = "0.0.0.0") -> list[str]:
    """Streamlit with the upload limit of the backend (XSRF and CORS protection stay on), sending nothing out.

    No usage statistics; and the browser's address set (to Streamlit's own default, ``localhost``), so that
    a headless start does not ask a third party (checkip.amazonaws.com) for this machine's external IP
    just to print an "External URL" line.
    """
    upload_mb = -(-get_settings().max_image_bytes // 2**20)  # ceil: Streamlit takes whole MB
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--browser.serverAddress",
        "localhost",
        "--server.maxUploadSize",
        str(upload_mb),
        "--client.toolbarMode",
        "viewer",
    ]


def _serve(args: argparse.Namespace) -> int:
    from .server import run

    settings = get_settings()
    logs.configure(settings, capture_output=True)  # JSON entries on Cloud Run, library prints included
    run(settings, host=args.host or settings.host, port=args.port or settings.port)
    return 0


def _ui(args: argparse.Namespace) -> int:
    """Run the Streamlit UI on $PORT (Cloud Run) or 8501."""
    script = _frontend_script()
    if script is None:
        print(
            "error: frontend/app.py not found: run from the repository (or the frontend image's /app)", file=sys.stderr
        )
        return 2
    port = args.port or int(os.environ.get("PORT", "8501"))
    os.execv(sys.executable, _streamlit_argv(script, port))  # streamlit becomes this process: signals reach it


def _up(args: argparse.Namespace) -> int:
    """Start the API and the Streamlit UI together; Ctrl-C stops both."""
    script = _frontend_script()
    if script is None:
        print("error: frontend/app.py not found: run from a clone of the repository", file=sys.stderr)
        return 2
    from .workshop.processes import LocalServer

    api = LocalServer([sys.executable, "-m", "yolo_service", "serve"], args.api_port, wait=False, show_output=True)
    ui = LocalServer(
        _streamlit_argv(script, args.ui_port),
        args.ui_port,
        env={"BACKEND_URL": f"http://localhost:{args.api_port}"},
        wait=False,
        show_output=True,
    )
    # `kill`/`docker stop` send SIGTERM, not Ctrl-C's SIGINT: treat both alike, so neither leaves orphans.
    # Once: a second signal (make passes its own SIGTERM on to us) must not cut the stopping short.
    stopping = False

    def interrupt_once(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)
    with api, ui:  # leaving the block stops both (SIGTERM, then kill), whatever happened
        print(f"API: http://localhost:{args.api_port}/docs   UI: http://localhost:{args.ui_port}   (Ctrl-C stops both)")
        try:
            while api.running and ui.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0 if (api.stop() or 0) in (0, -signal.SIGTERM) else 1  # stop() again only reads the exit code


def _print_table(response: PredictResponse) -> None:
    engine = f" on {response.engine}" if response.engine else ""
    print(
        f"model {response.model}{engine}: {len(response.detections)} detections in {response.time * 1000:.0f} ms "
        f"({response.image.width}x{response.image.height})"
    )
    if response.detections:
        print(f"{'class':<14}{'confidence':>11}  {'x_min':>6}{'y_min':>7}{'x_max':>7}{'y_max':>7}")
        for d in response.detections:
            print(f"{d.class_name:<14}{d.confidence:>11.2f}  {d.x_min:>6}{d.y_min:>7}{d.x_max:>7}{d.y_max:>7}")


def _predict(args: argparse.Namespace) -> int:
    from .drawing import draw_detections
    from .images import load_image
    from .models import predict

    image = load_image(args.image)  # a str is a path, everywhere in the library
    options = {"confidence": args.confidence, "classes": args.classes.split(",") if args.classes else None}
    if args.url:  # on a running backend instead of in this process
        from .client import Client

        with Client(args.url, api_key=args.api_key) as client:
            response = client.predict(args.image, args.model, **options)
    else:
        response = predict(image, args.model, **options)
    if args.json:
        print(response.model_dump_json(indent=2, exclude_none=True))
    else:
        _print_table(response)
    if args.out:
        draw_detections(image, response.detections).save(args.out)
        print(f"annotated image: {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _check(args: argparse.Namespace) -> int:
    """The workshop's test script: health, models, a prediction on a generated sample."""
    from .client import Client
    from .schema import box_iou
    from .shapes import sample_scene

    failures = 0

    def report(ok: bool, what: str, detail: str = "") -> None:
        nonlocal failures
        failures += not ok
        print(f"[{'PASS' if ok else 'FAIL'}] {what}{': ' + detail if detail else ''}")

    with Client(args.url, timeout=args.timeout, api_key=args.api_key) as client:
        print(f"checking {client.url}")
        try:
            report(client.health() == {"status": "ok"}, "GET /health", "alive")
            report(client.ready(), "GET /ready", "default model loaded")
            names = client.models()
            report(bool(names), "GET /models", ", ".join(names))
            image, shapes = sample_scene()
            model = args.model or ("shapes" if "shapes" in names else None)
            result = client.predict(image, model)
            found = ", ".join(f"{d.class_name} {d.confidence:.2f}" for d in result.detections) or "nothing"
            served = f"{result.model} on {result.engine}" if result.engine else result.model  # older servers: no engine
            report(True, f"POST /predict ({served})", f"{found} in {result.time * 1000:.0f} ms")
            if result.model == "shapes":
                for shape in shapes:
                    best = max(
                        (box_iou(shape.box, d.box) for d in result.detections if d.class_name == shape.class_name),
                        default=0.0,
                    )
                    report(best >= 0.7, f"  found the {shape.class_name}", f"IoU {best:.2f}")
        except YoloServiceError as exc:
            report(False, type(exc).__name__, str(exc))
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 0 if not failures else 1


def _healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when ``url`` answers 200 (the containers' HEALTHCHECK; slim images have no curl)."""
    import httpx

    url = args.url or f"http://127.0.0.1:{get_settings().port}{args.path}"
    try:
        status = httpx.get(url, timeout=args.timeout).status_code
    except httpx.HTTPError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{url}: {status}")
    return 0 if status == 200 else 1


def _models(args: argparse.Namespace) -> int:
    from .models import ModelCatalog

    catalog = ModelCatalog()
    states = {name: catalog.state(name) for name in catalog.names()}
    for name, state in states.items():
        spec = catalog.spec(name)
        print(f"{name:<12}{spec.source:<9}{state:<24}{catalog.engine(name):<13}{spec.description}")
    engine = catalog.settings.engine
    print(f"weights directory: {catalog.weights_dir}; engine: {engine} (YOLO_SERVICE_ENGINE)")
    if "not exported yet" in states.values():
        print(
            f"the {engine} engine serves a model's NAME.onnx: run `yolo-service export NAME` where the serve extra "
            "is installed, or set YOLO_SERVICE_ENGINE=ultralytics",
            file=sys.stderr,
        )
    return 0


def _samples(args: argparse.Namespace) -> int:
    """Print the sample images' paths (Ultralytics' photos; the generated scenes once written to --out)."""
    from .samples import sample_files

    files = sample_files(args.out)
    if args.name:
        if args.name not in files:
            hint = "" if args.out else " (generated scenes need --out DIR)"
            print(f"error: no sample {args.name!r}{hint}; choose one of: {', '.join(files) or 'none'}", file=sys.stderr)
            return 1
        print(files[args.name])
        return 0
    for name, path in files.items():
        print(f"{name:<28}{path}")
    if not files:
        print("no photos: Ultralytics is not installed here", file=sys.stderr)
    if not args.out:
        print("generated scenes for the shapes model: add --out DIR to write them", file=sys.stderr)
    return 0


def _download(args: argparse.Namespace) -> int:
    from .models import download

    for path in download(*args.names):
        print(f"ok: {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    """Export a model to ONNX next to its weights, for the torch-free engines; with --int8, quantize it too."""
    from .engines import ENGINES, export_target
    from .engines.export import export_onnx
    from .engines.quantize import export_int8
    from .models import ModelCatalog

    catalog = ModelCatalog(
        get_settings().model_copy(update={"engine": "ultralytics"})
    )  # the .pt, downloaded if need be
    catalog.download(args.name)
    spec = catalog.spec(args.name)
    out = Path(args.out) if args.out else None
    if args.int8:
        onnx = export_onnx(spec, Path(tempfile.mkdtemp(prefix="yolo-service-int8-")) / f"{spec.name}.onnx", args.imgsz)
        images = _calibration_images(args.calibration, spec.name, args.calibration_images)
        path = export_int8(onnx, images, out or export_target(spec, catalog.settings).with_suffix(".int8.xml"))
        shutil.rmtree(onnx.parent, ignore_errors=True)
        print(f"ok: {path} (serve it with YOLO_SERVICE_PRECISION=int8)")
        return 0
    path = export_onnx(spec, out or export_target(spec, catalog.settings), imgsz=args.imgsz, nms_free=args.nms_free)
    torch_free = " or ".join(name for name, engine in ENGINES.items() if not engine.torch)
    print(f"ok: {path} (the default engine, auto, serves it with {torch_free})")
    return 0


def _calibration_images(folder: str | None, model: str, count: int) -> list[Image.Image]:
    """INT8 calibration images: up to ``count`` images of ``folder``, or for ``shapes`` generated scenes.

    Raises:
        InvalidRequest: no folder for a model other than ``shapes``, or a folder with no image.
    """
    from .errors import InvalidRequest
    from .images import load_image

    if folder is None:
        if model != "shapes":
            raise InvalidRequest(
                f"INT8 calibration needs images like {model!r} will see: pass --calibration DIR (a few hundred images)"
            )
        from .workshop.accuracy import calibration_scenes  # never the held-out scenes the benchmark scores on

        return calibration_scenes(count)
    suffixes = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in suffixes)[:count]
    if not files:
        raise InvalidRequest(f"no images in {folder} ({', '.join(sorted(suffixes))})")
    return [load_image(str(p)) for p in files]


def _bench(args: argparse.Namespace) -> int:
    """Measure the engines, the HTTP server and memory; write bench.json and bench.png."""
    from .workshop.bench import run_bench

    run_bench(Path(args.out), quick=args.quick)
    return 0


def _train(args: argparse.Namespace) -> int:
    from .workshop.training import TrainingConfig, train_shapes

    overrides = {"epochs": args.epochs, "train_images": args.images, "imgsz": args.imgsz}
    config = TrainingConfig(**{k: v for k, v in overrides.items() if v is not None})
    command = shlex.join(["yolo-service", *args.argv])  # the record says what really ran
    record = train_shapes(Path(args.workdir), config, install=args.install, command=command)
    print(json.dumps({k: record[k] for k in ("heldout", "seconds")}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(prog="yolo-service", description="YOLO detection: library, API and UI.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the API (uvicorn) on $PORT or 8000")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=_serve)

    p = sub.add_parser("up", help="run the API and the Streamlit UI together")
    p.add_argument("--api-port", type=int, default=8000)
    p.add_argument("--ui-port", type=int, default=8501)
    p.set_defaults(func=_up)

    p = sub.add_parser("ui", help="run the Streamlit UI on $PORT or 8501")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=_ui)

    p = sub.add_parser("healthcheck", help="exit 0 if the local server answers 200 (for container HEALTHCHECKs)")
    p.add_argument("--path", default="/health", help="path on 127.0.0.1:$PORT (default /health)")
    p.add_argument("--url", default=None, help="a full URL instead")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=_healthcheck)

    p = sub.add_parser("predict", help="detect objects in an image file, in this process")
    p.add_argument("image")
    p.add_argument("--model", default=None, help="a name from `yolo-service models` (default: the default model)")
    p.add_argument("--confidence", type=float, default=None)
    p.add_argument("--classes", default=None, help="comma-separated class names to keep")
    p.add_argument("--out", default=None, help="write the annotated image here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--url", default=None, help="predict on this running backend instead of in this process")
    p.add_argument("--api-key", default=None, help="the backend's API key (X-API-Key); default: $YOLO_SERVICE_API_KEY")
    p.set_defaults(func=_predict)

    p = sub.add_parser("check", help="check a running backend: health, models, a prediction")
    p.add_argument("url", nargs="?", default="http://localhost:8000")
    p.add_argument("--model", default=None)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--api-key", default=None, help="the backend's API key (X-API-Key); default: $YOLO_SERVICE_API_KEY")
    p.set_defaults(func=_check)

    p = sub.add_parser("models", help="list the model catalog")
    p.set_defaults(func=_models)

    p = sub.add_parser("samples", help="sample images: Ultralytics' photos and the generated scenes, as file paths")
    p.add_argument("name", nargs="?", default=None, help="print only this sample's path (e.g. bus.jpg)")
    p.add_argument("--out", default=None, help="also write the generated scenes here as PNG files")
    p.set_defaults(func=_samples)

    p = sub.add_parser("download", help="fetch model weights now (needs internet for COCO models)")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=_download)

    p = sub.add_parser(
        "export",
        help="export a model to ONNX next to its weights (the auto engine does it on first load); "
        "--int8: an INT8 OpenVINO model too",
    )
    p.add_argument("name", help="a model: yolo26n, shapes, or NAME for NAME.pt in the weights directory")
    p.add_argument(
        "--imgsz", type=int, default=None, help="longest input side (default: the model's); the shape is dynamic"
    )
    p.add_argument("--out", default=None, help="write the ONNX file (or with --int8, the .xml) here instead")
    p.add_argument("--nms-free", action="store_true", help="YOLO26: export the end-to-end head (no NMS at run time)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantize to INT8 with NNCF (the export extra) into NAME.int8.xml; serve with YOLO_SERVICE_PRECISION=int8",
    )
    p.add_argument(
        "--calibration", default=None, help="--int8: a folder of images like the real ones (shapes: generated scenes)"
    )
    p.add_argument("--calibration-images", type=int, default=300, help="--int8: how many calibration images")
    p.set_defaults(func=_export)

    p = sub.add_parser("bench", help="benchmark engines, the HTTP server and memory: bench.json + bench.png")
    p.add_argument("--out", default="bench", help="directory for bench.json and bench.png")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run in about a minute")
    p.set_defaults(func=_bench)

    p = sub.add_parser("train-demo", help="regenerate the shapes data and retrain the bundled model (CPU)")
    p.add_argument("--workdir", default="build/train-demo")
    p.add_argument("--epochs", type=int, default=None, help="default: as the bundled model was made")
    p.add_argument("--images", type=int, default=None, help="training images to generate")
    p.add_argument("--imgsz", type=int, default=None)
    p.add_argument("--install", action="store_true", help="replace the bundled weights with the result")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``yolo-service`` command."""
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if not logging.getLogger().handlers:  # as logging.basicConfig: a host (a test runner) keeps its own
        logs.configure(get_settings())
    # One line per HTTP call drowns `check`'s report (the UI keeps the client's lines: one per backend call).
    logging.getLogger("yolo_service.client").setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
        return code
    except YoloServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
