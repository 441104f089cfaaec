"""Drawing boxes: the box and label land where the detection is, colours are stable."""

from PIL import Image

from yolo_service import Detection, color_for, draw_detections


def detection(**kw):
    base = dict(x_min=20, y_min=40, x_max=80, y_max=90, class_name="square", class_id=1, confidence=0.87)
    return Detection(**{**base, **kw})


def test_box_outline_is_drawn_in_the_class_colour():
    image = Image.new("RGB", (200, 150), (255, 255, 255))
    drawn = draw_detections(image, [detection()])
    color = color_for("square")
    assert drawn.getpixel((20, 60)) == color  # left edge
    assert drawn.getpixel((79, 60)) == color  # right edge (exclusive x_max)
    assert drawn.getpixel((50, 65)) == (255, 255, 255)  # inside is untouched
    assert image.getpixel((20, 60)) == (255, 255, 255)  # the input is not modified


def test_label_sits_above_the_box_or_inside_at_the_top():
    image = Image.new("RGB", (200, 150), (255, 255, 255))
    above = draw_detections(image, [detection()])
    assert above.getpixel((22, 38)) != (255, 255, 255)  # label background just above y_min
    at_top = draw_detections(image, [detection(y_min=0)])
    assert at_top.getpixel((22, 3)) != (255, 255, 255)


def test_colours_are_stable_and_differ_between_classes():
    assert color_for("circle") == color_for("circle")
    assert len({color_for(name) for name in ("circle", "square", "triangle")}) == 3


def test_lines_and_text_scale_with_the_image():
    big = Image.new("RGB", (4000, 3000), (255, 255, 255))
    drawn = draw_detections(big, [detection(x_min=1000, y_min=1000, x_max=2000, y_max=2000)])
    # 3000 / 200 = 15-pixel lines: a pixel 10 px inside the left edge is still the line.
    assert drawn.getpixel((1010, 1500)) == color_for("square")
