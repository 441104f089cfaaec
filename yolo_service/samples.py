"""Sample images to try: real photos for the COCO models, generated scenes for the ``shapes`` model.

The photos are the two that ship inside the installed Ultralytics package (``ultralytics/assets``:
``bus.jpg``, ``zidane.jpg``); they are used from there and never copied into this repository. Where
Ultralytics is not installed (the frontend image, the core install) there are no photos, only the
generated scenes of :mod:`yolo_service.shapes`. Finding the photos does not import Ultralytics (nor torch).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from .shapes import sample_scenes

__all__ = ["PHOTOS", "sample_files", "sample_photos"]

#: The photos that Ultralytics ships in its ``assets`` folder: people, a bus (COCO classes).
PHOTOS: tuple[str, ...] = ("bus.jpg", "zidane.jpg")


def _ultralytics_assets() -> Path | None:
    try:
        spec = importlib.util.find_spec("ultralytics")  # finds the package without running it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def sample_photos() -> dict[str, Path]:
    """Ultralytics' sample photos by file name (``bus.jpg``…), empty when Ultralytics is not installed."""
    assets = _ultralytics_assets()
    if assets is None:
        return {}
    return {name: assets / name for name in PHOTOS if (assets / name).is_file()}


def scene_file_name(name: str) -> str:
    """The file name of a generated scene: ``"square and circle"`` → ``square_and_circle.png``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") + ".png"


def sample_files(directory: str | Path | None = None) -> dict[str, Path]:
    """Every sample as a file: the photos where they are, and the scenes written to ``directory`` as PNG.

    Without ``directory`` only the photos are returned (nothing is written).
    """
    files = dict(sample_photos())
    if directory is not None:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for name, (image, _) in sample_scenes().items():
            path = folder / scene_file_name(name)
            image.save(path)
            files[path.name] = path
    return files
