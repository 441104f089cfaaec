"""The exported engines' pre- and post-processing on known values: letterbox, NMS around its threshold, decoding.

Pure NumPy and Pillow: no runtime, no model. Boxes are chosen so that each expected number can be
worked out by hand (the comments do it).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from yolo_service.engines.exported import decode_output, letterbox, nms

GREY = 114 / 255  # the letterbox padding, as Ultralytics pads


# --- letterbox ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "tensor_hw", "offset"),
    [
        # Portrait images: the width is the side the stride rounds (landscape ones round the height).
        ((500, 900), (640, 384), (14, 0)),  # 356 columns padded to 384 (+28), centred: 14 left
        ((100, 3000), (640, 32), (5, 0)),  # 21 columns padded to 32 (+11): 5 left, 6 right
        ((310, 1000), (640, 224), (13, 0)),  # 198 columns (+26): 13 left
        ((1000, 310), (224, 640), (0, 13)),  # the same, landscape
        ((330, 1000), (640, 224), (6, 0)),  # 211 columns (+13): 6 left
    ],
)
def test_letterbox_pads_the_short_side_only_up_to_the_stride(size, tensor_hw, offset):
    tensor, _, padding = letterbox(Image.new("RGB", size, (255, 0, 0)), (640, 640), stride=32)
    assert tensor.shape == (1, 3, *tensor_hw)
    assert padding == offset


def test_letterbox_places_the_image_exactly_inside_the_padding():
    """A 100x30 image into 64x64 (no stride): scaled by 0.64 to 64x19, 45 grey rows: 22 above, 23 below."""
    image = Image.new("RGB", (100, 30), (255, 128, 0))
    tensor, gain, (left, top) = letterbox(image, (64, 64))
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert gain == pytest.approx(0.64) and (left, top) == (0, 22)
    column = tensor[0, :, :, 10]  # channels x rows
    assert column[:, 21].tolist() == pytest.approx([GREY] * 3)  # the last grey row above
    assert column[:, 22].tolist() == pytest.approx([1.0, 128 / 255, 0.0])  # the first image row, RGB order
    assert column[:, 40].tolist() == pytest.approx([1.0, 128 / 255, 0.0])  # the last image row (22 + 19 - 1)
    assert column[:, 41].tolist() == pytest.approx([GREY] * 3)  # the first grey row below
    assert tensor[0, :, 30, 0].tolist() == pytest.approx([1.0, 128 / 255, 0.0])  # the image spans every column
    assert tensor[0, :, 30, 63].tolist() == pytest.approx([1.0, 128 / 255, 0.0])


def test_letterbox_of_an_image_already_at_the_input_size_is_the_image():
    image = Image.new("L", (32, 64), 51)  # grey levels: converted to three equal channels
    tensor, gain, padding = letterbox(image, (64, 32))
    assert gain == 1.0 and padding == (0, 0) and tensor.shape == (1, 3, 64, 32)
    assert np.allclose(tensor, 0.2)


def test_letterbox_centres_the_columns_of_a_tall_image():
    tensor, gain, (left, top) = letterbox(Image.new("RGB", (20, 100), (0, 0, 255)), (50, 50))
    assert gain == 0.5 and (left, top) == (20, 0)  # 10 columns in 50: 20 grey each side
    assert tensor[0, :, 25, 19].tolist() == pytest.approx([GREY] * 3)
    assert tensor[0, :, 25, 20].tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert tensor[0, :, 25, 29].tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert tensor[0, :, 25, 30].tolist() == pytest.approx([GREY] * 3)


# --- NMS around its threshold ---------------------------------------------------------------------------------

# Box 1 overlaps box 0 by exactly one half (intersection 100, union 200); box 2 overlaps nothing.
BOXES = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [30, 30, 40, 40]], dtype=np.float32)
SCORES = np.array([0.9, 0.8, 0.7], dtype=np.float32)


@pytest.mark.parametrize(
    ("iou", "kept"),
    [
        (0.51, [0, 1, 2]),  # overlap 0.5 is under the threshold: both kept
        (0.5, [0, 1, 2]),  # at the threshold: kept
        (0.499, [0, 2]),  # just under: the lower score is suppressed
        (0.0, [0, 2]),  # zero: any overlap suppresses, a box that touches nothing is kept
    ],
)
def test_nms_around_its_threshold(iou, kept):
    assert nms(BOXES, SCORES, iou=iou).tolist() == kept


def test_nms_keeps_the_best_score_of_each_cluster_in_score_order():
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [1, 1, 11, 11], [51, 50, 61, 60]], dtype=np.float32)
    scores = np.array([0.3, 0.6, 0.9, 0.5], dtype=np.float32)
    assert nms(boxes, scores, iou=0.5).tolist() == [2, 1]  # each cluster's best, the best cluster first


def test_nms_measures_overlap_with_each_box_s_own_area():
    """A small box inside a big one: IoU 25/100 (not 25/25): suppressed below 0.25, kept above."""
    boxes = np.array([[0, 0, 10, 10], [2, 2, 7, 7]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    assert nms(boxes, scores, iou=0.26).tolist() == [0, 1]
    assert nms(boxes, scores, iou=0.24).tolist() == [0]
    assert nms(boxes[::-1].copy(), scores, iou=0.26).tolist() == [0, 1]  # the small one first
    assert nms(boxes[::-1].copy(), scores, iou=0.24).tolist() == [0]


def test_nms_of_a_wide_and_a_tall_box():
    """Widths and heights not mixed up: 20x5 and 5x20 crossing in a 5x5 square, IoU 25/175."""
    boxes = np.array([[0, 10, 20, 15], [10, 0, 15, 20]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    assert nms(boxes, scores, iou=0.15).tolist() == [0, 1]  # 25/175 = 0.143
    assert nms(boxes, scores, iou=0.14).tolist() == [0]


# --- decoding both head layouts ------------------------------------------------------------------------------


def yolo11_head(rows: list[tuple[float, float, float, float, float, float]]) -> np.ndarray:
    """A YOLO11 output ``[1, 4 + 2 classes, anchors]`` from (cx, cy, w, h, score class 0, score class 1) rows."""
    return np.array(rows, dtype=np.float32).T[None]


def test_yolo11_boxes_are_centre_size_turned_into_corners():
    head = yolo11_head([(50, 40, 20, 10, 0.9, 0.1), (10, 90, 4, 6, 0.2, 0.7)])
    boxes, scores, classes = decode_output(head, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert boxes.tolist() == [[40, 35, 60, 45], [8, 87, 12, 93]]
    assert scores.tolist() == pytest.approx([0.9, 0.7]) and classes.tolist() == [0, 1]


def test_yolo11_a_score_at_the_confidence_threshold_is_dropped_just_above_kept():
    """As Ultralytics: a detection needs a score above the threshold."""
    head = yolo11_head([(50, 40, 20, 10, 0.5, 0.0), (150, 40, 20, 10, 0.0, np.nextafter(np.float32(0.5), 1))])
    _, scores, classes = decode_output(head, confidence=0.5, iou=0.5, class_ids=None, max_detections=10)
    assert classes.tolist() == [1] and scores[0] > 0.5


def test_yolo11_nms_is_per_class():
    """The same box found as two classes is two detections; twice as one class, one."""
    head = yolo11_head([(50, 50, 20, 20, 0.9, 0.0), (50, 50, 20, 20, 0.0, 0.8), (51, 50, 20, 20, 0.7, 0.0)])
    boxes, scores, classes = decode_output(head, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert classes.tolist() == [0, 1] and scores.tolist() == pytest.approx([0.9, 0.8])
    assert boxes.tolist() == [[40, 40, 60, 60], [40, 40, 60, 60]]


def test_yolo11_class_filter_and_max_detections():
    head = yolo11_head([(10, 10, 4, 4, 0.9, 0.0), (50, 50, 4, 4, 0.0, 0.8), (90, 90, 4, 4, 0.6, 0.0)])
    _, _, classes = decode_output(head, confidence=0.25, iou=0.5, class_ids=[1], max_detections=10)
    assert classes.tolist() == [1]
    _, scores, _ = decode_output(head, confidence=0.25, iou=0.5, class_ids=None, max_detections=2)
    assert scores.tolist() == pytest.approx([0.9, 0.8])  # the two best
    _, scores, _ = decode_output(head, confidence=0.25, iou=0.5, class_ids=None, max_detections=1)
    assert scores.tolist() == pytest.approx([0.9])


def test_yolo11_a_class_filter_drops_an_anchor_whose_best_class_is_not_asked_for():
    """As Ultralytics: an anchor is its best class; asked for another, it is dropped, not found as that other."""
    head = yolo11_head([(10, 10, 4, 4, 0.9, 0.6), (50, 50, 4, 4, 0.3, 0.8)])
    boxes, scores, classes = decode_output(head, confidence=0.25, iou=0.5, class_ids=[1], max_detections=10)
    assert boxes.tolist() == [[48, 48, 52, 52]] and classes.tolist() == [1]
    assert scores.tolist() == pytest.approx([0.8])


def end_to_end_head(rows: list[tuple[float, float, float, float, float, int]]) -> np.ndarray:
    """A YOLO26 output ``[1, max_det, 6]``: x_min, y_min, x_max, y_max, score, class."""
    return np.array(rows, dtype=np.float32)[None]


def test_end_to_end_boxes_are_corners_as_given_best_first():
    head = end_to_end_head(
        [(5, 6, 25, 36, 0.6, 2), (100, 50, 140, 90, 0.95, 0), (0, 0, 1, 1, 0.1, 1), (7, 8, 9, 10, 0.3, 1)]
    )
    boxes, scores, classes = decode_output(head, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert boxes.tolist() == [[100, 50, 140, 90], [5, 6, 25, 36], [7, 8, 9, 10]]
    assert scores.tolist() == pytest.approx([0.95, 0.6, 0.3]) and classes.tolist() == [0, 2, 1]
    boxes, _, classes = decode_output(head, confidence=0.25, iou=0.5, class_ids=[1, 2], max_detections=1)
    assert boxes.tolist() == [[5, 6, 25, 36]] and classes.tolist() == [2]


def test_end_to_end_a_score_at_the_confidence_threshold_is_dropped_just_above_kept():
    above = float(np.nextafter(np.float32(0.25), np.float32(1)))
    head = end_to_end_head([(0, 0, 10, 10, 0.25, 0), (20, 20, 30, 30, above, 1)])
    _, scores, classes = decode_output(head, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert classes.tolist() == [1] and scores.tolist() == pytest.approx([above])


def test_end_to_end_runs_no_nms():
    """Two boxes on top of each other are both kept: the model already chose them."""
    head = end_to_end_head([(0, 0, 10, 10, 0.9, 0), (0, 0, 10, 10, 0.8, 0)])
    boxes, _, _ = decode_output(head, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert len(boxes) == 2


def test_the_layout_is_told_apart_by_the_shape():
    """[1, 300, 6] is end to end; [1, 6, anchors] (YOLO11 with 2 classes) is not, even with few anchors."""
    e2e = end_to_end_head([(0, 0, 10, 10, 0.9, 1)] * 8)
    boxes, _, classes = decode_output(e2e, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert len(boxes) == 8 and classes.tolist() == [1] * 8  # no NMS
    yolo11 = yolo11_head([(50, 50, 20, 20, 0.9, 0.0)] * 8)  # [1, 6, 8]
    boxes, _, _ = decode_output(yolo11, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert boxes.tolist() == [[40, 40, 60, 60]]  # eight identical anchors: NMS keeps one
    square = yolo11_head([(50, 50, 20, 20, 0.9, 0.0)] * 6)  # [1, 6, 6]: ambiguous, read as YOLO11
    assert len(decode_output(square, confidence=0.25, iou=0.5, class_ids=None, max_detections=10)[0]) == 1


@pytest.mark.parametrize("rows", [5, 7, 300])
def test_an_end_to_end_head_of_any_length_is_recognised(rows):
    head = end_to_end_head([(0, 0, 10, 10, 0.9, 1)] * rows)
    boxes, _, _ = decode_output(output=head, confidence=0.25, iou=0.5, class_ids=None, max_detections=1000)
    assert len(boxes) == rows  # not mistaken for a YOLO11 head (whose NMS would keep one)


def test_more_candidates_than_nms_takes_keeps_the_best():
    """Over 30000 candidates, NMS sees the 30000 best: the single best one is among them and wins."""
    rows = [(50, 50, 20, 20, 0.5, 0.0)] * 30_000 + [(50, 50, 20, 20, 0.99, 0.0)]
    boxes, scores, _ = decode_output(yolo11_head(rows), confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert boxes.tolist() == [[40, 40, 60, 60]] and scores.tolist() == pytest.approx([0.99])


def test_past_30000_candidates_the_weakest_are_not_considered():
    """30000 strong candidates on one spot and a weak one elsewhere: NMS sees the 30000 best only."""
    rows = [(50, 50, 20, 20, 0.9, 0.0)] * 30_000 + [(500, 500, 20, 20, 0.3, 0.0)]
    boxes, _, _ = decode_output(yolo11_head(rows), confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert boxes.tolist() == [[40, 40, 60, 60]]
    rows = [(50, 50, 20, 20, 0.9, 0.0)] * 29_999 + [(500, 500, 20, 20, 0.3, 0.0)]  # 30000: all considered
    boxes, _, _ = decode_output(yolo11_head(rows), confidence=0.25, iou=0.5, class_ids=None, max_detections=10)
    assert boxes.tolist() == [[40, 40, 60, 60], [490, 490, 510, 510]]
