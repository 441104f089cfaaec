"""The benchmark's mAP: known answers for small cases, and the held-out scenes are the training's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from yolo_service.workshop.accuracy import (
    average_precision,
    calibration_scenes,
    heldout_scenes,
    mean_average_precision,
)

BOX = (10.0, 10.0, 50.0, 50.0)


def test_perfect_detections_score_one():
    truth = [[(BOX, 0)], [((0.0, 0.0, 20.0, 20.0), 1)]]
    found = [[(BOX, 0, 0.9)], [((0.0, 0.0, 20.0, 20.0), 1, 0.8)]]
    assert mean_average_precision(found, truth) == {"map50": 1.0, "map50_95": 1.0}


def test_a_box_off_by_a_little_counts_at_low_thresholds_only():
    # IoU of (10,10,50,50) and (10,10,50,46): 1600 vs 1440 -> 0.9: a hit at 0.50 … 0.90, a miss at 0.95
    found = [[((10.0, 10.0, 50.0, 46.0), 0, 0.9)]]
    result = mean_average_precision(found, [[(BOX, 0)]])
    assert result["map50"] == 1.0
    assert result["map50_95"] == pytest.approx(0.9)


def test_wrong_class_and_duplicates_are_false_positives():
    truth = [[(BOX, 0)]]
    assert mean_average_precision([[(BOX, 1, 0.9)]], truth)["map50"] == 0.0
    # a duplicate below the true positive: precision 1 up to recall 1, then 0.5: AP stays 1
    assert mean_average_precision([[(BOX, 0, 0.9), (BOX, 0, 0.5)]], truth)["map50"] == 1.0
    # a false positive ranked first: precision 0.5 at recall 1, so every recall point reads 0.5
    assert mean_average_precision([[((80.0, 80.0, 90.0, 90.0), 0, 0.9), (BOX, 0, 0.5)]], truth)["map50"] == 0.5


def test_average_precision_reads_101_recall_points():
    # two truths, one found: recall reaches 0.5, so 51 of the 101 points read precision 1
    assert average_precision(np.array([0.9]), np.array([True]), 2) == pytest.approx(51 / 101)
    assert average_precision(np.array([]), np.array([], dtype=bool), 3) == 0.0
    assert math.isnan(average_precision(np.array([0.9]), np.array([False]), 0))


def test_heldout_scenes_are_the_training_sets_and_calibration_is_not():
    scenes = heldout_scenes(4)
    assert [s[0].size for s in scenes] == [s[0].size for s in heldout_scenes(4)]  # reproducible
    assert all(shapes for _, shapes in scenes)
    calibration = calibration_scenes(4)
    assert [np.asarray(c).tobytes() for c in calibration] != [np.asarray(s[0]).tobytes() for s in scenes]
