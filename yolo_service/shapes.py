"""Generated scenes of circles, squares and triangles with exactly known boxes.

One generator serves three purposes: the training data of the bundled ``shapes``
detector, the sample images of the tests and notebooks, and the "try a sample"
images of the UI. Pure Pillow + random: no numpy, torch or ultralytics here, so
the frontend can import it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "SHAPE_CLASSES",
    "Shape",
    "draw_scene",
    "random_scene",
    "sample_scene",
    "sample_scenes",
]

#: The class names of the ``shapes`` model, in class-id order.
SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")

_NAMED_COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 70, 220),
    "yellow": (240, 200, 20),
    "orange": (245, 130, 20),
    "purple": (140, 50, 180),
}


@dataclass(frozen=True)
class Shape:
    """One filled shape drawn in a scene: its class, its exact box and its colour."""

    class_name: str
    x_min: int
    y_min: int
    x_max: int
    y_max: int
    color: tuple[int, int, int] = _NAMED_COLORS["red"]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The box as ``(x_min, y_min, x_max, y_max)`` in pixels."""
        return (self.x_min, self.y_min, self.x_max, self.y_max)

    @property
    def class_id(self) -> int:
        """The class index in :data:`SHAPE_CLASSES`."""
        return SHAPE_CLASSES.index(self.class_name)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape) -> None:
    x0, y0, x1, y1 = shape.box
    # Pillow's outlines include the end pixel, so x1 - 1 keeps the shape inside its box.
    if shape.class_name == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=shape.color)
    elif shape.class_name == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=shape.color)
    elif shape.class_name == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=shape.color)
    else:
        raise ValueError(f"unknown shape {shape.class_name!r}; expected one of {SHAPE_CLASSES}")


def draw_scene(
    shapes: list[Shape],
    size: tuple[int, int] = (640, 480),
    background: tuple[int, int, int] | Image.Image = (235, 235, 235),
) -> Image.Image:
    """Draw ``shapes`` on a plain colour (or a given background image) of ``size``."""
    if isinstance(background, Image.Image):
        image = background.convert("RGB").resize(size)
    else:
        image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        _draw_shape(draw, shape)
    return image


def sample_scene() -> tuple[Image.Image, list[Shape]]:
    """The reference scene: 640x480, a red square and a blue circle at known places."""
    shapes = [
        Shape("square", 100, 100, 300, 300, _NAMED_COLORS["red"]),
        Shape("circle", 380, 180, 560, 360, _NAMED_COLORS["blue"]),
    ]
    return draw_scene(shapes), shapes


def sample_scenes() -> dict[str, tuple[Image.Image, list[Shape]]]:
    """A few named scenes to try without uploading anything (UI, notebooks, CLI)."""
    c = _NAMED_COLORS
    three = [
        Shape("triangle", 40, 60, 240, 260, c["green"]),
        Shape("circle", 280, 40, 420, 180, c["orange"]),
        Shape("square", 400, 260, 600, 460, c["purple"]),
    ]
    small = [
        Shape("circle", 60, 60, 110, 110, c["red"]),
        Shape("triangle", 300, 200, 360, 260, c["blue"]),
        Shape("square", 520, 360, 580, 420, c["yellow"]),
    ]
    return {
        "square and circle": sample_scene(),
        "three shapes": (draw_scene(three, background=(250, 250, 245)), three),
        "small shapes on dark": (draw_scene(small, background=(40, 40, 50)), small),
    }


def _random_color(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return math.dist(a, b)


def _random_background(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, tuple[int, int, int]]:
    """A plain, gradient, noisy or cluttered background, and its mean colour."""
    base = _random_color(rng)
    kind = rng.choice(("plain", "gradient", "noise", "clutter"))
    if kind == "gradient":
        other = _random_color(rng)
        strip = Image.linear_gradient("L").resize((1, 256))
        image = Image.composite(Image.new("RGB", (1, 256), other), Image.new("RGB", (1, 256), base), strip)
        image = image.resize(size).rotate(rng.choice((0, 90, 180, 270)), expand=False)
        mean = tuple((a + b) // 2 for a, b in zip(base, other, strict=True))
        return image, mean  # type: ignore[return-value]
    image = Image.new("RGB", size, base)
    if kind == "noise":
        noise = Image.effect_noise(size, rng.uniform(10, 40)).convert("RGB")
        image = Image.blend(image, noise, 0.3)
    elif kind == "clutter":
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randrange(3, 12)):
            xy = [rng.randrange(size[0]), rng.randrange(size[1]), rng.randrange(size[0]), rng.randrange(size[1])]
            draw.line(xy, fill=_random_color(rng), width=rng.randrange(1, 4))
    return image, base


def random_scene(
    rng: random.Random,
    size: tuple[int, int] = (640, 480),
    max_shapes: int = 5,
) -> tuple[Image.Image, list[Shape]]:
    """A random scene: 1..max_shapes non-overlapping shapes, 5-60 % of the short side."""
    width, height = size
    image, background = _random_background(rng, size)
    short = min(width, height)
    target = rng.randint(1, max_shapes)
    shapes: list[Shape] = []
    for _ in range(50):  # rejection sampling, bounded: a crowded scene just gets fewer shapes
        if len(shapes) == target:
            break
        side = int(short * rng.uniform(0.05, 0.6))
        x0, y0 = rng.randrange(0, width - side), rng.randrange(0, height - side)
        box = (x0, y0, x0 + side, y0 + side)
        if any(_overlaps(box, s.box) for s in shapes):
            continue
        color = _random_color(rng)
        while _distance(color, background) < 120:
            color = _random_color(rng)
        shapes.append(Shape(rng.choice(SHAPE_CLASSES), *box, color))
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        _draw_shape(draw, shape)
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return image, shapes


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int = 4) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])
