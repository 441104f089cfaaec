"""The PyTorch engine: a model's ``.pt`` weights run by Ultralytics, the reference the other engines match.

Torch and Ultralytics are imported inside functions only: importing this module is cheap, and
the rest of the package (UI, client, the exported-model engines) works without them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailable
from .base import DetectorBase, Found, ModelSpec, Query

if TYPE_CHECKING:
    from PIL import Image

    from ..config import Settings

__all__ = ["UltralyticsDetector", "configure_ultralytics", "import_ultralytics"]


class UltralyticsDetector(DetectorBase):
    """One model's ``.pt`` weights on PyTorch, through Ultralytics.

    Ultralytics' predictor keeps per-call state on the model object, so one model
    object serves one call at a time. The detector holds ``replicas`` copies, each
    used by one call at a time (a queue hands them out): concurrent requests run in
    parallel on ``threads // replicas`` torch threads each. All copies hold the same
    weights and thread count, so every result is identical to a serial call.
    """

    engine = "ultralytics"
    precision = "f32"

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        try:
            import_ultralytics()
            from ultralytics import YOLO
        except ImportError as exc:
            raise ModelUnavailable(
                f"cannot load model {spec.name!r}: Ultralytics is not installed ({exc}); "
                "install the serving extra: pip install 'yolo-service[serve]'"
            ) from exc

        self.spec = spec
        self.settings = settings  # the default thresholds
        self.imgsz = spec.imgsz
        self.replicas = max(1, settings.replicas)
        self.threads = max(1, settings.threads // self.replicas)
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()  # Ultralytics YOLO objects
        try:
            models = [YOLO(str(spec.path), task="detect") for _ in range(self.replicas)]
        except Exception as exc:  # a corrupt or foreign .pt file: tell the user which one
            raise ModelUnavailable(f"model {spec.name!r} could not be loaded from {spec.path.name}: {exc}") from exc
        self.names: dict[int, str] = dict(models[0].names)
        # Warm up each copy: Ultralytics builds its predictor on the first call (and pins
        # torch threads there); doing it now keeps the first real requests fast.
        from PIL import Image

        blank = Image.new("RGB", (spec.imgsz, spec.imgsz), (114, 114, 114))
        for model in models:
            self._pool.put(model)
            self.predict(blank)

    def infer(self, image: Image.Image, query: Query) -> Found:
        """One model copy (waiting while all are busy) predicts; Ultralytics letterboxes, decodes and runs NMS."""
        import torch

        model = self._pool.get()  # blocks while every copy is busy
        try:
            # Ultralytics' select_device pins torch to cores-1 threads; use this detector's share.
            torch.set_num_threads(self.threads)
            result = model.predict(
                image,
                imgsz=self.spec.imgsz,
                conf=query.confidence,
                iou=query.iou,
                classes=query.class_ids,
                max_det=query.max_detections,
                device="cpu",
                verbose=False,
            )[0]
        finally:
            self._pool.put(model)
        boxes = result.boxes
        return Found(boxes.xyxy.tolist(), boxes.conf.tolist(), [int(c) for c in boxes.cls.tolist()])


def import_ultralytics() -> None:
    """Import Ultralytics with its console handler bound to stderr.

    Its logger writes to the ``sys.stdout`` of import time (e.g. "Creating new
    Ultralytics Settings"); stdout belongs to the app (``yolo-service predict --json``).
    """
    if "ultralytics" not in sys.modules:
        with contextlib.redirect_stdout(sys.stderr):
            import ultralytics  # noqa: F401


def configure_ultralytics(settings: Settings) -> None:
    """Tell Ultralytics, before it is imported: never pip-install at run time; no network offline."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    if settings.offline:
        os.environ.setdefault("YOLO_OFFLINE", "1")
