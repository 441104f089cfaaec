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


def test_colours_are_pinned_per_class_name():
    """Known values: the same colour in every run, process, app and release (md5 of the name, not hash())."""
    assert color_for("circle") == (242, 36, 194)
    assert color_for("square") == (36, 242, 119)
    assert color_for("triangle") == (36, 225, 242)
    assert color_for("person") == (36, 242, 36)


def test_lines_and_text_scale_with_the_image():
    big = Image.new("RGB", (4000, 3000), (255, 255, 255))
    drawn = draw_detections(big, [detection(x_min=1000, y_min=1000, x_max=2000, y_max=2000)])
    # 3000 / 200 = 15-pixel lines: a pixel 10 px inside the left edge is still the line.
    assert drawn.getpixel((1010, 1500)) == color_for("square")
