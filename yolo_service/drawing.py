"""Draw detections on an image: boxes, class names and confidences, readable at any size.

Shared by the UI, the notebooks, the widgets, the CLI and the API's ``annotate``
option, so every view of a prediction looks the same. The font is the one that
ships inside Pillow (``ImageFont.load_default(size)``): no system font is searched.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable

from PIL import Image, ImageDraw, ImageFont

from .schema import Detection

__all__ = ["color_for", "draw_detections"]


def color_for(class_name: str) -> tuple[int, int, int]:
    """A stable, saturated colour per class name: the same in every run, process and app."""
    hue = int(hashlib.md5(class_name.encode(), usedforsecurity=False).hexdigest(), 16) % 360 / 360
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return (round(red * 255), round(green * 255), round(blue * 255))


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


def draw_detections(
    image: Image.Image,
    detections: Iterable[Detection],
    *,
    show_confidence: bool = True,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """Return a copy of ``image`` with each detection's box and label drawn on it.

    Line width and font size scale with the image (a 4000-pixel photo gets thick
    lines and large text) unless given.
    """
    canvas = image.convert("RGB").copy()
    short = min(canvas.size)
    line_width = line_width or max(2, round(short / 200))
    font = ImageFont.load_default(size=font_size or max(12, round(short / 32)))
    draw = ImageDraw.Draw(canvas)
    for det in detections:
        color = color_for(det.class_name)
        draw.rectangle((det.x_min, det.y_min, det.x_max - 1, det.y_max - 1), outline=color, width=line_width)
        label = f"{det.class_name} {det.confidence:.2f}" if show_confidence else det.class_name
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        pad = max(2, line_width)
        width, height = right - left + 2 * pad, bottom - top + 2 * pad
        # Above the box when there is room, else just inside its top edge.
        y = det.y_min - height if det.y_min - height >= 0 else det.y_min
        x = min(max(det.x_min, 0), max(canvas.width - width, 0))
        draw.rectangle((x, y, x + width, y + height), fill=color)
        draw.text((x + pad - left, y + pad - top), label, fill=_text_color(color), font=font)
    return canvas
