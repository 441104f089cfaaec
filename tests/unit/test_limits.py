"""Every limit of the contract and the decoder at its boundary: at the limit accepted, just past it refused.

Also known values of ``box_iou`` (a public function the other tests lean on to decide whether a shape
was found, so a wrong IoU would make them easier to pass).
"""

from __future__ import annotations

import base64
import io
import math
import warnings

import pytest
from PIL import Image
from pydantic import ValidationError

from tests.unit.test_images import png_declaring
from yolo_service import (
    Detection,
    ImageTooLarge,
    InvalidImage,
    PredictOptions,
    PredictRequest,
    box_iou,
    decode_base64,
    encode_image,
    load_image,
)
from yolo_service.images import load_reduced

ABOVE_ONE = math.nextafter(1.0, 2.0)  # the smallest float past 1
BELOW_ZERO = math.nextafter(0.0, -1.0)


def refusal(model: type, **fields: object) -> tuple[str, ...]:
    """The (field, pydantic error type) of each problem when ``model`` is built from ``fields``."""
    with pytest.raises(ValidationError) as info:
        model(**fields)
    return tuple(f"{'.'.join(map(str, e['loc']))}:{e['type']}" for e in info.value.errors())


# --- the contract's ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["confidence", "iou"])
def test_thresholds_take_zero_and_one_and_nothing_past_them(field):
    assert getattr(PredictOptions(**{field: 0.0}), field) == 0.0
    assert getattr(PredictOptions(**{field: 1.0}), field) == 1.0
    assert refusal(PredictOptions, **{field: ABOVE_ONE}) == (f"{field}:less_than_equal",)
    assert refusal(PredictOptions, **{field: BELOW_ZERO}) == (f"{field}:greater_than_equal",)


def test_max_detections_takes_one_to_a_thousand():
    assert PredictOptions(max_detections=1).max_detections == 1
    assert PredictOptions(max_detections=1000).max_detections == 1000
    assert refusal(PredictOptions, max_detections=0) == ("max_detections:greater_than_equal",)
    assert refusal(PredictOptions, max_detections=1001) == ("max_detections:less_than_equal",)


def test_the_image_field_needs_one_character():
    assert PredictRequest(image="x").image == "x"
    assert refusal(PredictRequest, image="") == ("image:string_too_short",)


def test_options_are_strict_and_finite():
    assert refusal(PredictOptions, annotate=1) == ("annotate:bool_type",)
    assert refusal(PredictOptions, confidence=float("nan")) == ("confidence:finite_number",)
    assert PredictOptions().annotate is False  # an annotated image only when asked for


def test_a_request_s_options_are_its_fields_without_the_image():
    request = PredictRequest(image="x", model="shapes", confidence=0.5, iou=0.4, max_detections=3, classes=["a"])
    assert request.options == PredictOptions(model="shapes", confidence=0.5, iou=0.4, max_detections=3, classes=["a"])


def detection(confidence: float) -> Detection:
    return Detection(x_min=1, y_min=2, x_max=3, y_max=4, class_name="square", class_id=1, confidence=confidence)


def test_a_detection_s_confidence_is_between_zero_and_one():
    assert detection(0.0).confidence == 0.0 and detection(1.0).confidence == 1.0
    assert refusal(Detection, **detection(1.0).model_dump() | {"confidence": ABOVE_ONE}) == (
        "confidence:less_than_equal",
    )
    assert refusal(Detection, **detection(0.0).model_dump() | {"confidence": BELOW_ZERO}) == (
        "confidence:greater_than_equal",
    )
    assert detection(0.5).box == (1, 2, 3, 4)


# --- box_iou: known values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # the same box
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half of each overlaps
        ((0, 0, 10, 10), (2, 2, 7, 7), 25 / 100),  # one inside the other: the small one's area over the big one's
        ((0, 0, 4, 2), (1, 1, 3, 6), 2 / 16),  # areas 8 and 10, overlap 2x1: widths and heights kept apart
        ((10, 20, 30, 60), (0, 0, 20, 30), 100 / 1300),  # overlap 10x10; areas 800 and 600
        ((0.5, 0.5, 2.5, 1.5), (1.5, 0.5, 3.5, 1.5), 1 / 3),  # fractional pixels
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # disjoint
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching along an edge: no area in common
        ((0, 0, 10, 10), (0, 10, 10, 20), 0.0),  # touching along the other edge
        ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),  # touching at a corner
        ((0, 0, 10, 10), (3, 12, 6, 18), 0.0),  # overlapping columns, disjoint rows
        ((0, 0, 10, 10), (12, 3, 18, 6), 0.0),  # overlapping rows, disjoint columns
        ((5, 5, 5, 5), (0, 0, 10, 10), 0.0),  # a box with no area
        ((0, 0, 10, 10), (9, 0, 19, 10), 10 / 190),  # a one-pixel-wide overlap is still an overlap
        ((0, 0, 10, 10), (0, 9, 10, 19), 10 / 190),  # and a one-pixel-high one
        ((0, 0, 10, 10), (10.5, 0, 20, 10), 0.0),  # half a pixel apart: disjoint, not a negative overlap
        ((0, 0, 10, 10), (0, 10.5, 10, 20), 0.0),
        ((0, 0, 0.5, 0.5), (0, 0, 0.5, 0.5), 1.0),  # sub-pixel boxes (a union under 1) are boxes too
    ],
)
def test_box_iou_known_values(a, b, iou):
    assert box_iou(a, b) == pytest.approx(iou)
    assert box_iou(b, a) == pytest.approx(iou)  # symmetric


# --- the decoder's limits -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def png() -> bytes:
    return encode_image(Image.new("RGB", (64, 48), (200, 10, 10)))


def test_byte_limit_exactly_at_the_size_accepted_one_byte_less_refused(png):
    assert load_image(png, max_bytes=len(png)).size == (64, 48)
    with pytest.raises(ImageTooLarge, match=f"the image is {len(png):,} bytes; the limit is {len(png) - 1:,} bytes"):
        load_image(png, max_bytes=len(png) - 1)


def test_pixel_limit_exactly_at_the_count_accepted_one_less_refused(png):
    assert load_image(png, max_pixels=64 * 48).size == (64, 48)
    with pytest.raises(ImageTooLarge, match="64x48 = 3,072 pixels; the limit is 3,071 pixels"):
        load_image(png, max_pixels=64 * 48 - 1)
    assert load_image(Image.new("RGB", (64, 48)), max_pixels=64 * 48).size == (64, 48)  # a PIL image too
    with pytest.raises(ImageTooLarge):
        load_image(Image.new("RGB", (64, 48)), max_pixels=64 * 48 - 1)


@pytest.mark.parametrize("size", [(1, 10), (10, 1), (1, 1)])
def test_one_pixel_wide_or_high_is_an_image(size):
    assert load_image(png_declaring(*size)).size == size
    assert load_image(Image.new("RGB", size)).size == size


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_an_image_with_no_pixels_is_invalid(size):
    with pytest.raises(InvalidImage, match=rf"no pixels \({size[0]}x{size[1]}\)"):
        load_image(Image.new("RGB", size))


def test_url_safe_base64_with_or_without_padding():
    data = b"\xfb\xff\xfe\xfb\xff"  # standard base64 "+//++/8=": URL-safe "-__--_8="
    assert base64.b64encode(data) == b"+//++/8="
    assert decode_base64("-__--_8=") == data
    assert decode_base64("-__--_8") == data  # padding dropped, as URL-safe senders often do
    assert decode_base64("+//++/8=") == data


def test_a_url_safe_base64_image_decodes():
    image = Image.new("RGB", (30, 20))
    image.putpixel((0, 0), (251, 255, 254))  # bytes that base64 into + and / characters somewhere
    data = encode_image(image)
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert "-" in text or "_" in text
    assert load_image(decode_base64(text)).getpixel((0, 0)) == (251, 255, 254)


def test_a_data_url_prefix_is_stripped_whatever_its_case(png):
    text = base64.b64encode(png).decode()
    assert decode_base64(f"DATA:image/PNG;BASE64,{text}") == png
    assert decode_base64(f"  data:image/png;base64,{text}\n") == png


def test_a_directory_is_not_an_image_and_says_so(tmp_path):
    with pytest.raises(IsADirectoryError):
        load_image(tmp_path)


@pytest.mark.parametrize(("side", "reduced"), [(100, (100, 50)), (101, (100, 50)), (99, (99, 50))])
def test_reduction_to_the_model_size_at_its_boundary(side, reduced):
    """Longest side at the target: kept as it is; one pixel over: reduced. Boxes map back to the original."""
    image, original = load_reduced(encode_image(Image.new("RGB", (side, 50))), 100)
    assert original == (side, 50)
    assert image.size == (reduced[0], round(50 * min(1, 100 / side)))


def test_a_jpeg_is_decoded_at_a_reduced_scale_only_down_to_the_target():
    buffer = io.BytesIO()
    Image.new("RGB", (800, 400), (0, 120, 0)).save(buffer, "JPEG")
    image, original = load_reduced(buffer.getvalue(), 200)  # 1/4 scale exactly: 200x100
    assert original == (800, 400) and image.size == (200, 100)
    image, original = load_reduced(buffer.getvalue(), 201)  # a little more than 1/4: decoded at 1/2, resized
    assert original == (800, 400) and image.size == (201, 100)


def test_unpadded_url_safe_base64_of_every_length_decodes():
    """Padding restored for each remainder: 10 characters need 2 '=', 7 need 1, 6 need 2."""
    for data in (b"\xfb\xff\xfe\xfb\xff\xfe\xfb", b"\xfb\xff\xfe\xfb\xff", b"\xfb\xff\xfe\xfb"):
        text = base64.urlsafe_b64encode(data).decode().rstrip("=")
        assert "-" in text or "_" in text
        assert decode_base64(text) == data, text


def jpeg_with_orientation(size: tuple[int, int], orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.new("RGB", size, (0, 0, 200)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [(1, (40, 20)), (2, (40, 20)), (3, (40, 20)), (4, (40, 20))] + [(turned, (20, 40)) for turned in (5, 6, 7, 8)],
)
def test_every_exif_orientation_gives_the_size_people_see(orientation, upright):
    """Orientations 5 to 8 turn the image by 90 degrees: width and height swap, also in the reported original size."""
    data = jpeg_with_orientation((40, 20), orientation)
    assert load_image(data).size == upright
    image, original = load_reduced(data, 20)  # reduced: the original size is what boxes map back to
    assert original == upright and max(image.size) == 20


def test_thirty_two_bit_float_grey_is_stretched_to_eight_bits():
    image = Image.new("F", (4, 4), 10.0)
    image.putpixel((0, 0), 1000.0)
    buffer = io.BytesIO()
    image.save(buffer, "TIFF")
    decoded = load_image(buffer.getvalue())
    assert decoded.getpixel((0, 0)) == (255, 255, 255) and decoded.getpixel((1, 1)) == (0, 0, 0)


def test_a_flat_sixteen_bit_image_decodes_black():
    """No range to stretch (every pixel the same): no division by zero, one level."""
    assert load_image(encode_image(Image.new("I;16", (4, 4), 300))).getpixel((2, 2)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_transparency_of_every_kind_is_flattened_on_white(mode):
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    assert load_image(buffer.getvalue()).getpixel((1, 1)) == (255, 255, 255)


def test_a_palette_image_with_a_transparent_colour_is_flattened_on_white():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=1)  # colour 1 (green) is transparent
    decoded = load_image(buffer.getvalue())
    assert decoded.getpixel((0, 0)) == (255, 0, 0) and decoded.getpixel((2, 2)) == (255, 255, 255)


def test_a_one_pixel_strip_stays_one_pixel_high_when_reduced():
    image, original = load_reduced(encode_image(Image.new("RGB", (3000, 1))), 100)
    assert original == (3000, 1) and image.size == (100, 1)


@pytest.mark.parametrize("source", [bytearray(b"x"), memoryview(b"x")])
def test_bytes_like_sources_are_bytes(source):
    with pytest.raises(InvalidImage, match="not an image Pillow can read \\(1 bytes\\)"):
        load_image(source)


def test_a_source_of_another_type_is_a_type_error():
    with pytest.raises(TypeError, match="not int"):
        load_image(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["F", "I;16"])
def test_deep_grey_is_stretched_exactly_onto_0_to_255(mode):
    """0..1020 onto 0..255: 1016 is level 254 (not 253 or 255: the scale is exactly 255 over the range)."""
    image = Image.new(mode, (3, 1))
    for x, value in enumerate((0, 1020, 1016)):
        image.putpixel((x, 0), value)
    buffer = io.BytesIO()
    image.save(buffer, "TIFF" if mode == "F" else "PNG")
    decoded = load_image(buffer.getvalue())
    assert [decoded.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (255, 255, 255), (254, 254, 254)]


def test_eight_bit_grey_keeps_its_levels():
    image = Image.new("L", (2, 1), 51)
    image.putpixel((1, 0), 200)
    decoded = load_image(encode_image(image))
    assert decoded.getpixel((0, 0)) == (51, 51, 51) and decoded.getpixel((1, 0)) == (200, 200, 200)


def test_jpeg_quality_is_applied():
    noisy = Image.effect_noise((64, 64), 60).convert("RGB")
    small, large = encode_image(noisy, "JPEG", quality=10), encode_image(noisy, "JPEG", quality=95)
    assert len(small) < len(large) / 2
    assert encode_image(noisy, "jpeg", quality=10) == small  # the format's case does not matter


def test_url_safe_base64_with_only_one_of_its_two_characters():
    assert decode_base64("--8=") == b"\xfb\xef"  # standard "++8="
    assert decode_base64("__8=") == b"\xff\xff"  # standard "//8="


def test_a_long_text_that_is_not_a_path_names_its_first_200_characters():
    text = "A" * 5000  # too long for a file name: ENAMETOOLONG, reported as a missing file
    with pytest.raises(FileNotFoundError) as info:
        load_image(text)
    assert info.value.filename == "A" * 200


def test_the_source_can_be_named(png):
    assert load_image(source=png, max_bytes=len(png)).size == (64, 48)


def test_a_large_jpeg_is_never_decoded_at_full_size(tmp_path):
    """A 6000x6000 JPEG for a 640-pixel model is decoded at 1/8 scale: its 108 MB of RGB pixels never exist.

    Measured as the peak memory of a fresh process (``ru_maxrss``) around one decode.
    """
    import subprocess
    import sys

    path = tmp_path / "large.jpg"
    Image.new("L", (6000, 6000), 128).save(path, "JPEG")
    code = (
        "import resource, sys\n"
        "from yolo_service.images import load_reduced\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "image, original = load_reduced(data, 640, max_pixels=40_000_000)\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(image.size, original, grown // 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    sizes, grown_mb = result.stdout.rsplit(" ", 1)[0], int(result.stdout.split()[-1])
    assert sizes == "(640, 640) (6000, 6000)"
    assert grown_mb < 30, f"decoding grew the process by {grown_mb} MB"


def test_a_palette_image_with_alpha_given_as_a_pil_image_is_flattened_on_white():
    image = Image.new("PA", (3, 3))  # palette index 0, alpha 0: transparent
    image.putpalette([255, 0, 0] * 256)
    assert load_image(image).getpixel((1, 1)) == (255, 255, 255)


@pytest.mark.parametrize(
    "exif",
    [
        b"garbage!",  # not a TIFF header: Pillow raises SyntaxError
        b"II*\x00",  # a TIFF header cut short: Pillow raises struct.error (once a 500 from the API)
        b"II+\x00\x08\x00\x00\x00",  # a TIFF header with a wrong magic number: struct.error too
    ],
)
def test_an_unreadable_exif_block_leaves_the_image_upright(exif):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 4), (0, 0, 200)).save(buffer, "PNG", exif=exif)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF data
        decoded = load_image(buffer.getvalue())
    assert decoded.size == (8, 4) and decoded.getpixel((1, 1)) == (0, 0, 200)


def test_a_detection_scales_each_axis_by_its_own_factor_and_rounds():
    d = Detection(x_min=10, y_min=20, x_max=31, y_max=43, class_name="square", class_id=1, confidence=0.5)
    assert d.scaled(0.5, 0.25).box == (5, 5, 16, 11)  # 15.5 -> 16, 10.75 -> 11
    assert d.scaled(2, 3).box == (20, 60, 62, 129)
    assert d.scaled(0.5, 0.25).confidence == 0.5 and d.scaled(2, 3).class_name == "square"


def test_a_scaled_detection_stays_within_the_bounds_given():
    d = Detection(x_min=10, y_min=20, x_max=30, y_max=40, class_name="square", class_id=1, confidence=0.5)
    assert d.scaled(2, 2, bounds=(50, 70)).box == (20, 40, 50, 70)  # 60 and 80 clipped to the image
    assert d.scaled(2, 2, bounds=(100, 100)).box == (20, 40, 60, 80)  # inside: unchanged
    assert d.scaled(2, 2).box == (20, 40, 60, 80)


# --- what decoding will cost, worked out by hand --------------------------------------------------------------


def opened(image: Image.Image, format: str, **options: object) -> tuple[Image.Image, bytes]:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    data = buffer.getvalue()
    return Image.open(io.BytesIO(data)), data


@pytest.mark.parametrize(
    ("mode", "cost"),
    [
        ("RGB", 5000 * 4 + 2 * (300 + 1)),  # 4 bytes a pixel; PNG: two rows of 3 samples of 8 bits (+1 filter byte)
        ("L", 5000 * 1 + 2 * (100 + 1)),  # 1 byte a pixel, one sample
        ("I;16", 5000 * 2 + 5000 * 4 + 2 * (200 + 1)),  # 2 bytes, a 4-byte working copy to shrink, 16-bit samples
        ("P", 5000 * 1 + 5000 * 4 + 2 * (13 + 1)),  # indices, an RGB working copy; 1-bit samples (one colour)
        ("RGBA", 5000 * 4 + 5000 * 4 + 2 * (400 + 1)),  # a premultiplied copy; four samples
        ("LA", 5000 * 4 + 5000 * 4 + 2 * (200 + 1)),  # grey + alpha: two samples
    ],
)
def test_the_decode_cost_of_a_100x50_png(mode, cost):
    from yolo_service.images import decode_cost

    image, data = opened(Image.new(mode, (100, 50)), "PNG")
    assert decode_cost(image, image.size, data) == cost


def test_the_decode_cost_of_webp_tiff_and_jpeg():
    from yolo_service.images import decode_cost, jpeg_scans

    image, data = opened(Image.new("RGB", (100, 50)), "WEBP")
    assert decode_cost(image, image.size, data) == 5000 * 4 + 3 * 5000 * 4  # libwebp's RGBA, a copy, a conversion
    image, data = opened(Image.new("RGB", (100, 50)), "TIFF")
    assert decode_cost(image, image.size, data) == 5000 * 4 * 2  # a strip as large as the image, at most
    image, data = opened(Image.new("RGB", (100, 50)), "JPEG")
    assert jpeg_scans(data) == 1 and decode_cost(image, image.size, data, jpeg_scans(data)) == 5000 * 4
    image, data = opened(Image.new("RGB", (100, 50)), "JPEG", progressive=True, subsampling=2)
    assert jpeg_scans(data) > 1
    # Progressive 4:2:0: every coefficient is kept, 2 bytes each. Luma: 13x7 blocks of 64; each chroma
    # plane at half size (50x25 pixels): 7x4 blocks.
    coefficients = (13 * 7 + 2 * 7 * 4) * 64 * 2
    assert decode_cost(image, image.size, data, jpeg_scans(data)) == 5000 * 4 + coefficients


def test_the_decode_cost_counts_what_shrinking_makes():
    """1000x500 to 100: box-reduced by 3 (the result stays 3x the target) to 334x167, then resampled in two
    passes (100x167, then 100x50), 4 bytes a pixel each."""
    from yolo_service.images import decode_cost

    image, data = opened(Image.new("RGB", (1000, 500)), "PNG")
    full = 500_000 * 4 + 2 * (3000 + 1)
    assert decode_cost(image, image.size, data, target_size=1000) == full  # no shrinking
    assert decode_cost(image, image.size, data, target_size=100) == full + 4 * (334 * 167 + 100 * 167 + 100 * 50)


def test_a_png_is_not_mirrored_and_the_caller_s_image_is_left_as_it_was():
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    image.paste((0, 0, 255), (10, 0, 20, 10))  # left red, right blue
    decoded = load_image(encode_image(image))
    assert decoded.getpixel((0, 0)) == (255, 0, 0) and decoded.getpixel((19, 0)) == (0, 0, 255)
    image.info["dpi"] = (72, 72)
    load_image(image)
    assert image.info == {"dpi": (72, 72)}  # the caller's image: copied before any change
