"""The validation gate's comparisons (pure): what passes, what is rejected and why."""

from __future__ import annotations

import numpy as np

from alprd.engines.base import Tolerances
from alprd.engines.validate import compare_detectors, compare_recognizers

TOL = Tolerances(conf=0.25, iou_min=0.8, score_tol=0.1, min_match=0.9)


def head(boxes, scores, anchors=32):
    """1 x (4+1) x anchors: the given boxes/scores, the rest empty."""
    out = np.zeros((1, 5, anchors), np.float32)
    out[0, 2:4] = 1.0
    for i, (b, s) in enumerate(zip(boxes, scores, strict=True)):
        out[0, :4, i] = b
        out[0, 4, i] = s
    return out


REF = head([[100, 100, 40, 20], [300, 200, 60, 30]], [0.9, 0.6])


def test_identical_outputs_pass():
    v = compare_detectors([REF], [REF.copy()], TOL)
    assert v.passed and v.reason == ""
    assert v.metrics["matched_source"] == 1.0 and v.metrics["mean_iou"] == 1.0


def test_small_numeric_drift_passes():
    cand = head([[101, 100, 40, 20], [300, 201, 61, 30]], [0.87, 0.63])
    v = compare_detectors([REF], [cand], TOL)
    assert v.passed, v.reason
    assert 0.85 < v.metrics["mean_iou"] < 1.0


def test_a_moved_box_is_rejected():
    cand = head([[130, 100, 40, 20], [300, 200, 60, 30]], [0.9, 0.6])
    v = compare_detectors([REF], [cand], TOL)
    assert not v.passed
    assert "1 of 2 source detections not matched" in v.reason


def test_a_lost_detection_and_an_extra_one_are_rejected():
    assert (
        "source detections not matched"
        in compare_detectors([REF], [head([[100, 100, 40, 20]], [0.9])], TOL).reason
    )
    extra = head([[100, 100, 40, 20], [300, 200, 60, 30], [500, 50, 30, 30]], [0.9, 0.6, 0.8])
    assert "engine detections not in the source" in compare_detectors([REF], [extra], TOL).reason


def test_score_drift_beyond_tolerance_is_rejected():
    cand = head([[100, 100, 40, 20], [300, 200, 60, 30]], [0.6, 0.6])
    v = compare_detectors([REF], [cand], TOL)
    assert not v.passed
    assert "1 of 2 source detections not matched" in v.reason


def test_without_detections_the_top_anchor_scores_must_agree():
    quiet = head([[100, 100, 40, 20]], [0.2])  # below conf: nothing detected
    assert compare_detectors([quiet], [head([[100, 100, 40, 20]], [0.15])], TOL).passed
    v = compare_detectors([quiet], [head([[100, 100, 40, 20]], [0.02])], TOL)
    assert not v.passed and "top anchor scores differ by 0.180" in v.reason


def probs(path, conf=0.95, classes=5):
    p = np.full((1, len(path), classes), (1 - conf) / (classes - 1), np.float32)
    p[0, np.arange(len(path)), path] = conf
    return p


def test_recognizer_same_text_passes_different_text_fails():
    ref = probs([1, 0, 2, 2, 0, 3])
    assert compare_recognizers([ref], [probs([1, 1, 2, 0, 0, 3], 0.9)], TOL).passed
    v = compare_recognizers([ref], [probs([1, 0, 4, 4, 0, 3])], TOL)
    assert not v.passed and "1 of 1 texts differ" in v.reason
    low = compare_recognizers([ref], [probs([1, 0, 2, 2, 0, 3], 0.6)], TOL)
    assert not low.passed and "character confidences differ" in low.reason
