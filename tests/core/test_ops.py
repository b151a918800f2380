"""Pure array operations: tables of input -> expected."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from alprd import ops


def _letterbox_reference(images, height, width):
    """Each image resized into a uint8 canvas filled with 114, the canvases
    stacked, BGR -> RGB, NCHW, / 255: the letterbox `letterbox_tensor` replaces."""
    canvases = []
    for img in images:
        lb, nh, nw = ops.fit(*img.shape[:2], height, width)
        out = np.full((height, width, 3), 114, np.uint8)
        top, left = int(lb.pad_y), int(lb.pad_x)
        out[top : top + nh, left : left + nw] = cv2.resize(img, (nw, nh))
        canvases.append(out)
    batch = np.stack(canvases)[..., ::-1].transpose(0, 3, 1, 2)
    return np.divide(batch, np.float32(255.0), dtype=np.float32)


def test_letterbox_keeps_aspect_and_maps_back():
    img = np.zeros((720, 1280, 3), np.uint8)
    resized, lb = ops.fitted(img, 640, 640)
    out = ops.letterbox_tensor([(resized, lb)], 640, 640)
    assert out.shape == (1, 3, 640, 640)
    assert lb.scale == pytest.approx(0.5)
    assert (lb.pad_x, lb.pad_y) == (0.0, 140.0)
    pad = np.float32(114) / np.float32(255)
    assert (out[0, :, :140] == pad).all() and (out[0, :, 500:] == pad).all()
    boxes = np.array([[100, 190, 300, 240]], np.float32)  # network pixels
    np.testing.assert_allclose(lb.to_image(boxes), [[200, 100, 600, 200]])


def test_letterbox_tensor_is_rgb_nchw_unit_range():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    t = ops.letterbox_tensor([ops.fitted(img, 2, 3)], 2, 3)
    assert t.shape == (1, 3, 2, 3) and t.dtype == np.float32
    assert t[0, 2].max() == 1.0 and t[0, 0].max() == 0.0  # blue lands in channel 2


@pytest.mark.parametrize("shape", [(720, 1280), (1280, 720), (640, 640), (37, 121), (481, 333)])
def test_letterbox_tensor_is_the_padded_canvas_value_for_value(shape):
    rng = np.random.default_rng(sum(shape))
    images = [
        rng.integers(0, 256, (*shape, 3), np.uint8),
        rng.integers(0, 256, (90, 40, 3), np.uint8),
    ]
    for height, width in ((640, 640), (384, 640), (416, 416)):
        got = ops.letterbox_tensor(
            [ops.fitted(img, height, width) for img in images], height, width
        )
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, _letterbox_reference(images, height, width))


def test_candidates_keep_only_anchors_whose_best_class_is_kept():
    """An anchor counts once, as its best class; with `keep`, only if that class is
    kept (a kept class scoring second does not make it a candidate)."""
    out = _head(
        [[10, 10, 4, 4], [20, 20, 4, 4], [30, 30, 4, 4], [40, 40, 4, 4]],
        [[0.9, 0.3, 0.0], [0.2, 0.8, 0.6], [0.1, 0.1, 0.2], [0.0, 0.5, 0.7]],
    )
    every = ops.candidates(out, 0.25)
    assert every.class_id.tolist() == [0, 1, 2] and every.image.tolist() == [0, 0, 0]
    np.testing.assert_allclose(every.confidence, [0.9, 0.8, 0.7])
    kept = ops.candidates(out, 0.25, np.array([1, 2]))
    assert kept.class_id.tolist() == [1, 2]
    np.testing.assert_allclose(kept.xyxy, [[18, 18, 22, 22], [38, 38, 42, 42]])
    two = ops.candidates(np.concatenate([out, out[:, :, ::-1]]), 0.75)
    assert two.image.tolist() == [0, 0, 1, 1] and two.class_id.tolist() == [0, 1, 1, 0]
    assert len(ops.candidates(out, 0.95)) == 0


def _head(boxes_cxcywh, scores):
    """A YOLO head output (1 x (4+nc) x anchors) from per-anchor boxes and scores."""
    return np.concatenate([np.array(boxes_cxcywh, np.float32).T, np.array(scores, np.float32).T])[
        None
    ]


def test_decode_yolo_thresholds_and_suppresses_per_class():
    out = _head(
        [[50, 50, 20, 20], [51, 50, 20, 20], [50, 50, 20, 20], [200, 200, 10, 10]],
        [[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.1, 0.05]],
    )
    [dets] = ops.decode_yolo(out, conf=0.25, iou=0.45)
    assert len(dets) == 2  # the second class-0 box is suppressed; the weak one dropped
    np.testing.assert_allclose(dets.xyxy[0], [40, 40, 60, 60])
    assert dets.class_id.tolist() == [0, 1]
    np.testing.assert_allclose(dets.confidence, [0.9, 0.7])


def test_decode_yolo_nothing_above_threshold():
    [dets] = ops.decode_yolo(_head([[5, 5, 2, 2]], [[0.1]]), conf=0.25, iou=0.45)
    assert len(dets) == 0 and dets.xyxy.shape == (0, 4)


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(ops.box_iou(a, b), [[1.0, 1 / 3, 0.0]], rtol=1e-6)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ([1, 1, 0, 1, 2, 2, 0], [1, 1, 2]),  # a blank separates a real repeat
        ([0, 0, 0], []),
        ([3, 3, 3], [3]),
        ([2, 0, 2, 0, 2], [2, 2, 2]),
    ],
)
def test_ctc_greedy(path, expected):
    probs = np.full((1, len(path), 4), 0.01, np.float32)
    probs[0, np.arange(len(path)), path] = 0.97
    [(ids, conf)] = ops.ctc_greedy(probs)
    assert ids == expected
    assert conf == pytest.approx([0.97] * len(expected))


def test_decoding_a_batch_is_decoding_each_image():
    """One NMS call serves the whole batch: the same box in two images is kept in
    both, and each image's result is what decoding it alone gives."""
    rng = np.random.default_rng(3)
    preds = []
    for _ in range(4):
        n = 40
        cxcy = rng.uniform(50, 500, (n, 2))
        wh = rng.uniform(20, 120, (n, 2))
        scores = rng.uniform(0, 1, (n, 3)) ** 3
        preds.append(np.concatenate([cxcy, wh, scores], axis=1).T.astype(np.float32))
    preds[1] = preds[0].copy()  # identical images must not suppress each other
    together = ops.decode_yolo(np.stack(preds), 0.2, 0.5, max_det=5)
    for pred, joint in zip(preds, together, strict=True):
        alone = ops.decode_yolo(pred[None], 0.2, 0.5, max_det=5)[0]
        assert len(alone) >= 1
        np.testing.assert_array_equal(joint.xyxy, alone.xyxy)
        np.testing.assert_array_equal(joint.class_id, alone.class_id)
    assert len(together[0]) == len(together[1])
