"""Regenerate the ``shapes`` data set and retrain the bundled ``shapes`` detector on CPU.

``yolo-service train-demo`` runs :func:`train_shapes`. It writes a YOLO-format data set
from :mod:`yolo_service.shapes`, trains a YOLO11n from scratch (no pretrained weights,
so it works offline), measures mAP50 on a freshly generated held-out set and, when
asked, installs the weights and a JSON record of how they were made as package data.
The installed files are package data shipped to every user: the weights are saved
with what inference needs only (no training arguments, no repository metadata, no
path of the machine that trained them), and the record states the command that ran.
Ultralytics is imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..models import BUNDLED_DIR
from ..shapes import SHAPE_CLASSES, random_scene

__all__ = ["TrainingConfig", "evaluate_shapes", "save_for_inference", "train_shapes", "write_dataset"]

logger = logging.getLogger(__name__)


# A mix of aspect ratios, so letterboxing is part of what the model learns.
SCENE_SIZES = ((640, 480), (480, 640), (512, 512), (800, 600), (320, 240), (960, 540))


@dataclass(frozen=True)
class TrainingConfig:
    """How the bundled model is made; stored next to the weights as ``shapes.json``."""

    architecture: str = "yolo11n.yaml"
    epochs: int = 15
    imgsz: int = 320
    batch: int = 32
    train_images: int = 1200
    val_images: int = 100
    test_images: int = 300
    seed: int = 0
    test_seed: int = 12345


def _write_split(root: Path, split: str, count: int, rng: random.Random) -> None:
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        size = rng.choice(SCENE_SIZES)
        image, shapes = random_scene(rng, size)
        width, height = size
        rows = [
            f"{s.class_id} {(s.x_min + s.x_max) / 2 / width:.6f} {(s.y_min + s.y_max) / 2 / height:.6f} "
            f"{(s.x_max - s.x_min) / width:.6f} {(s.y_max - s.y_min) / height:.6f}"
            for s in shapes
        ]
        name = f"{split}_{index:05d}"
        # Half JPEG, so compression artefacts are in the training data too.
        if rng.random() < 0.5:
            image.save(images / f"{name}.jpg", quality=rng.randint(60, 95))
        else:
            image.save(images / f"{name}.png")
        (labels / f"{name}.txt").write_text("\n".join(rows) + "\n")


def write_dataset(root: Path, splits: dict[str, int], seed: int) -> Path:
    """Write a YOLO-format data set of random scenes under ``root``; return its ``data.yaml``."""
    from tqdm import tqdm

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, count in tqdm(splits.items(), desc="generating splits", unit="split"):
        _write_split(root, split, count, rng)
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(SHAPE_CLASSES))
    data = root / "data.yaml"
    # Ultralytics requires a train key even to validate; a validation-only set points it at val.
    split_lines = "".join(f"{split}: images/{split}\n" for split in splits)
    if "train" not in splits:
        split_lines += f"train: images/{next(iter(splits))}\n"
    data.write_text(f"path: {root.resolve()}\n{split_lines}names:\n{names}\n")
    return data


def evaluate_shapes(weights: Path, workdir: Path, config: TrainingConfig) -> dict[str, float]:
    """mAP50 and mAP50-95 of ``weights`` on a held-out set generated from ``config.test_seed``."""
    from ultralytics import YOLO

    data = write_dataset(workdir / "heldout", {"val": config.test_images}, seed=config.test_seed)
    metrics = YOLO(str(weights)).val(
        data=str(data),
        imgsz=config.imgsz,
        batch=config.batch,
        device="cpu",
        plots=False,
        verbose=False,
        project=str(workdir / "runs"),
        name="heldout",
        exist_ok=True,
    )
    return {"map50": round(float(metrics.box.map50), 4), "map50_95": round(float(metrics.box.map), 4)}


def train_shapes(
    workdir: Path, config: TrainingConfig = TrainingConfig(), install: bool = False, command: str | None = None
) -> dict[str, Any]:
    """Generate data, train, evaluate; optionally install weights + record as package data.

    ``command`` is what the record says was run (the CLI passes its own command line);
    by default, this Python call with its config.

    Returns:
        The record written to ``shapes.json`` (config, metrics, timings, versions).
    """
    import torch
    import ultralytics
    from ultralytics import YOLO

    workdir = Path(workdir)
    started = time.perf_counter()
    data = write_dataset(workdir / "data", {"train": config.train_images, "val": config.val_images}, seed=config.seed)
    generated = time.perf_counter()
    model = YOLO(config.architecture)
    # Ultralytics pins CPU training to cores - 1 threads (1 on a 2-core machine); use them all.
    model.add_callback("on_pretrain_routine_end", lambda trainer: torch.set_num_threads(os.cpu_count() or 1))
    model.train(
        data=str(data),
        epochs=config.epochs,
        imgsz=config.imgsz,
        batch=config.batch,
        device="cpu",
        workers=2,
        seed=config.seed,
        deterministic=True,
        pretrained=False,
        plots=False,
        amp=False,
        project=str(workdir / "runs"),
        name="train",
        exist_ok=True,
        cache="ram",
        patience=100,
        close_mosaic=5,
        fliplr=0.0,  # a flipped triangle is still a triangle, but keep labels exact
    )
    trained = time.perf_counter()
    best = workdir / "runs" / "train" / "weights" / "best.pt"
    metrics = evaluate_shapes(best, workdir, config)
    record = {
        "name": "shapes",
        "classes": list(SHAPE_CLASSES),
        "config": asdict(config),
        "heldout": metrics,
        "seconds": {
            "generate": round(generated - started, 1),
            "train": round(trained - generated, 1),
            "total": round(time.perf_counter() - started, 1),
        },
        "versions": {
            "ultralytics": ultralytics.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "cpu_threads": os.cpu_count(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or f"train_shapes(workdir, {config!r}, install={install})",
    }
    if install:
        BUNDLED_DIR.mkdir(exist_ok=True)
        save_for_inference(best, BUNDLED_DIR / "shapes.pt", imgsz=config.imgsz)
        (BUNDLED_DIR / "shapes.json").write_text(json.dumps(record, indent=2) + "\n")
        logger.info("installed %s", BUNDLED_DIR / "shapes.pt")
    return record


def save_for_inference(source: Path, target: Path, imgsz: int) -> None:
    """Save a trained checkpoint with what inference needs only: the FP16 model and its input size.

    Ultralytics' checkpoints also carry the training arguments (the data set and run
    directories: absolute paths of the machine that trained), the git root, dates,
    metrics and the optimizer. None of it is needed to predict, and package data must
    not embed this machine's paths. ``YOLO(target)`` loads the result as before.
    """
    import torch
    import ultralytics

    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    model = checkpoint.get("ema") or checkpoint["model"]
    model.args = {"task": "detect", "imgsz": imgsz}  # replaces the training arguments the model object keeps
    for attribute in ("criterion", "pt_path"):
        if hasattr(model, attribute):
            delattr(model, attribute)
    model.half()
    for parameter in model.parameters():
        parameter.requires_grad = False
    torch.save(
        {
            "model": model,
            # Ultralytics reads the task and the default input size from here (the rest: its defaults).
            "train_args": {"task": "detect", "imgsz": imgsz},
            "version": ultralytics.__version__,
            "license": "AGPL-3.0 (https://ultralytics.com/license)",
        },
        target,
    )
