"""The scene generator: exact boxes, reproducible from a seed."""

import random

from yolo_service import SHAPE_CLASSES, Shape, draw_scene, random_scene, sample_scene, sample_scenes


def test_sample_scene_is_the_documented_reference():
    image, shapes = sample_scene()
    assert image.size == (640, 480)
    assert [(s.class_name, s.box) for s in shapes] == [
        ("square", (100, 100, 300, 300)),
        ("circle", (380, 180, 560, 360)),
    ]


def test_shapes_fill_exactly_their_boxes():
    image = draw_scene([Shape("square", 10, 20, 30, 40, (255, 0, 0))], size=(50, 50), background=(0, 0, 0))
    assert image.getbbox() == (10, 20, 30, 40)
    triangle = draw_scene([Shape("triangle", 5, 5, 45, 45, (255, 0, 0))], size=(50, 50), background=(0, 0, 0))
    assert triangle.getbbox() == (5, 5, 45, 45)


def test_random_scenes_are_reproducible_and_within_bounds():
    a = random_scene(random.Random(7), (320, 240))
    b = random_scene(random.Random(7), (320, 240))
    assert a[1] == b[1] and list(a[0].getdata()) == list(b[0].getdata())
    for seed in range(50):
        _, shapes = random_scene(random.Random(seed), (320, 240))
        assert 1 <= len(shapes) <= 5
        for s in shapes:
            side = s.x_max - s.x_min
            assert s.class_name in SHAPE_CLASSES
            assert 0 <= s.x_min < s.x_max <= 320 and 0 <= s.y_min < s.y_max <= 240
            assert int(240 * 0.05) <= side <= int(240 * 0.6)


def test_sample_scenes_have_names_and_known_shapes():
    scenes = sample_scenes()
    assert len(scenes) >= 3
    for image, shapes in scenes.values():
        assert image.size == (640, 480) and shapes
