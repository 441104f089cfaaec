"""Accuracy on held-out scenes: mAP50 and mAP50-95 of any detector, computed as COCO does, in NumPy.

The benchmark scores every engine and precision (PyTorch, OpenVINO and ONNX Runtime in float,
OpenVINO in INT8) on the same generated scenes, so a quantized model's cost in accuracy is a
number next to its gain in speed. The scenes are the bundled model's held-out set: generated
exactly as ``yolo-service train-demo`` generates it (:mod:`.training`, ``test_seed``), never seen in
training, nor in INT8 calibration (other seeds).

The measure, for each class: the detections of all images by confidence, each matched to the
unmatched true box of its image with the highest IoU at or above a threshold (a true positive),
else a false positive; the precision-recall curve made monotonic, read at 101 recall points (COCO's
interpolation). AP50 at IoU 0.5; AP50-95 the mean over 0.50, 0.55 … 0.95. mAP: the mean over the
classes that have true boxes. No torch: the torch-free engines are scored in a torch-free process.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..shapes import Shape, random_scene
from .training import SCENE_SIZES, TrainingConfig

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ..schema import Detection

__all__ = [
    "IOU_THRESHOLDS",
    "average_precision",
    "calibration_scenes",
    "evaluate",
    "heldout_scenes",
    "mean_average_precision",
]

CALIBRATION_SEED = 2024  # neither the training set's seed nor the held-out set's

#: COCO's IoU thresholds: 0.50, 0.55 … 0.95.
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

Box = tuple[float, float, float, float]


def heldout_scenes(count: int | None = None, seed: int | None = None) -> list[tuple[Image.Image, list[Shape]]]:
    """The held-out scenes and their true shapes, as :func:`~.training.write_dataset` writes them.

    Same generator, same seed (``TrainingConfig.test_seed``), same random sequence: half of the scenes
    go through a JPEG round trip at a random quality, as the files on disk do.
    """
    from PIL import Image

    config = TrainingConfig()
    rng = random.Random(config.test_seed if seed is None else seed)
    scenes = []
    for _ in range(config.test_images if count is None else count):
        image, shapes = random_scene(rng, rng.choice(SCENE_SIZES))
        if rng.random() < 0.5:
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=rng.randint(60, 95))
            image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        scenes.append((image, shapes))
    return scenes


def calibration_scenes(count: int = 300) -> list[Image.Image]:
    """Generated scenes for INT8 calibration of ``shapes`` (a seed of their own: never the held-out scenes)."""
    rng = random.Random(CALIBRATION_SEED)
    return [random_scene(rng, rng.choice(SCENE_SIZES))[0] for _ in range(count)]


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each xyxy box of ``a`` (rows) with each of ``b`` (columns)."""
    import numpy as np

    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def average_precision(scores: np.ndarray, hits: np.ndarray, truths: int) -> float:
    """AP of detections (``scores``; ``hits`` True for a true positive) against ``truths`` true boxes.

    COCO's 101-point interpolation: the precision envelope (the best precision at this recall or
    more) read at recall 0, 0.01 … 1, where a recall never reached reads 0.
    """
    import numpy as np

    if truths == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / truths
    precision = tp / (tp + fp)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    index = np.searchsorted(recall, points, side="left")
    read = np.where(index < len(envelope), envelope[np.minimum(index, len(envelope) - 1)], 0.0)
    return float(read.mean())


def mean_average_precision(
    found: Sequence[Sequence[tuple[Box, int, float]]], truth: Sequence[Sequence[tuple[Box, int]]]
) -> dict[str, float]:
    """mAP50 and mAP50-95 of detections against true boxes, image by image.

    Args:
        found: per image, the detections as (xyxy box, class id, confidence).
        truth: per image, the true objects as (xyxy box, class id).

    Returns:
        ``map50`` and ``map50_95``, in 0..1.
    """
    import numpy as np

    classes = sorted({c for boxes in truth for _, c in boxes})
    thresholds = np.asarray(IOU_THRESHOLDS)
    ap = np.zeros((len(classes), len(thresholds)))
    for k, cls in enumerate(classes):
        scores: list[float] = []
        hits: list[np.ndarray] = []  # per detection: a true positive at each threshold
        truths = 0
        for detections, objects in zip(found, truth, strict=True):
            mine = sorted((d for d in detections if d[1] == cls), key=lambda d: -d[2])
            true_boxes = np.asarray([b for b, c in objects if c == cls], dtype=np.float64).reshape(-1, 4)
            truths += len(true_boxes)
            if not mine:
                continue
            ious = _iou_matrix(np.asarray([b for b, _, _ in mine], dtype=np.float64), true_boxes)
            matched = np.zeros((len(thresholds), len(true_boxes)), dtype=bool)
            for row, (_, _, score) in enumerate(mine):  # best confidence first, as COCO
                hit = np.zeros(len(thresholds), dtype=bool)
                for t, threshold in enumerate(thresholds):
                    free = np.where(~matched[t] & (ious[row] >= threshold), ious[row], -1.0)
                    if len(free) and free.max() >= 0:
                        matched[t, int(free.argmax())] = True
                        hit[t] = True
                scores.append(score)
                hits.append(hit)
        score_array = np.asarray(scores, dtype=np.float64)
        hit_array = np.asarray(hits, dtype=bool).reshape(-1, len(thresholds))
        for t in range(len(thresholds)):
            ap[k, t] = average_precision(score_array, hit_array[:, t], truths)
    return {"map50": float(np.nanmean(ap[:, 0])), "map50_95": float(np.nanmean(ap))}


def evaluate(
    predict: Callable[[Image.Image], list[Detection]], scenes: Sequence[tuple[Image.Image, list[Shape]]]
) -> dict[str, float]:
    """mAP50 and mAP50-95 (rounded to 4 places) of ``predict`` on ``scenes`` (images and their true shapes).

    ``predict`` should keep weak detections (confidence 0.001, as Ultralytics validates): the
    precision-recall curve needs its low-confidence end.
    """
    found, truth = [], []
    for image, shapes in scenes:
        found.append([(d.box, d.class_id, d.confidence) for d in predict(image)])
        truth.append([(s.box, s.class_id) for s in shapes])
    return {name: round(value, 4) for name, value in mean_average_precision(found, truth).items()}
