"""Does a built engine agree with its source model? Pure comparisons of outputs.

Detectors: every source detection above ``tolerances.conf`` must have a match in
the engine's output (same class, IoU >= ``iou_min``, confidence within
``score_tol``), and every engine detection above ``conf`` a match in the source's;
at least ``min_match`` of them on both sides. When the samples hold no detection at all
(synthetic samples, an empty scene), the 20 highest-scoring anchors of the source
must instead score within ``score_tol`` in the engine, so the check still means
something.

Recogniser: the greedy CTC text of at least ``min_match`` of the samples must be
identical, and where it is, each character's confidence within ``score_tol``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from alprd import ops
from alprd.engines.base import Tolerances

Output = npt.NDArray[np.float32]
NMS_IOU = 0.45
TOP_ANCHORS = 20


@dataclass(frozen=True)
class Validation:
    passed: bool
    samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def compare_detectors(
    reference: Sequence[Output], candidate: Sequence[Output], tol: Tolerances
) -> Validation:
    """`reference`/`candidate`: one raw head output (1 x (4+nc) x anchors) per sample."""
    ref_total = ref_matched = cand_total = cand_matched = 0
    ious: list[float] = []
    score_diffs: list[float] = [0.0]
    top_diff = 0.0
    low = max(1e-4, tol.conf - tol.score_tol)
    for ref_out, cand_out in zip(reference, candidate, strict=True):
        ref_hi, cand_hi = (
            ops.decode_yolo(ref_out, tol.conf, NMS_IOU)[0],
            ops.decode_yolo(cand_out, tol.conf, NMS_IOU)[0],
        )
        ref_lo, cand_lo = (
            ops.decode_yolo(ref_out, low, NMS_IOU)[0],
            ops.decode_yolo(cand_out, low, NMS_IOU)[0],
        )
        m, i, d = _match(ref_hi, cand_lo, tol)
        ref_total, ref_matched = ref_total + len(ref_hi), ref_matched + m
        ious += i
        score_diffs += d
        m, _, _ = _match(cand_hi, ref_lo, tol)
        cand_total, cand_matched = cand_total + len(cand_hi), cand_matched + m
        ref_scores, cand_scores = ref_out[0, 4:].max(axis=0), cand_out[0, 4:].max(axis=0)
        top = np.argsort(-ref_scores)[:TOP_ANCHORS]
        top_diff = max(top_diff, float(np.abs(ref_scores[top] - cand_scores[top]).max()))
    recall = ref_matched / ref_total if ref_total else 1.0
    precision = cand_matched / cand_total if cand_total else 1.0
    metrics = {
        "source_detections": float(ref_total),
        "engine_detections": float(cand_total),
        "matched_source": round(recall, 4),
        "matched_engine": round(precision, 4),
        "mean_iou": round(float(np.mean(ious)), 4) if ious else 1.0,
        "max_score_diff": round(max(score_diffs), 4),
        "top_anchor_score_diff": round(top_diff, 4),
    }
    problems = []
    if recall < tol.min_match:
        problems.append(f"{ref_total - ref_matched} of {ref_total} source detections not matched")
    if precision < tol.min_match:
        problems.append(
            f"{cand_total - cand_matched} of {cand_total} engine detections not in the source"
        )
    if ref_total == 0 and top_diff > tol.score_tol:
        problems.append(f"top anchor scores differ by {top_diff:.3f} > {tol.score_tol}")
    return Validation(not problems, len(reference), metrics, "; ".join(problems))


def _match(
    want: ops.Detections, have: ops.Detections, tol: Tolerances
) -> tuple[int, list[float], list[float]]:
    """Greedy one-to-one matching of `want` (best first) into `have`."""
    if len(want) == 0 or len(have) == 0:
        return 0, [], []
    iou = ops.box_iou(want.xyxy, have.xyxy)
    iou[want.class_id[:, None] != have.class_id[None, :]] = 0.0
    used: set[int] = set()
    ious, diffs = [], []
    for w in range(len(want)):
        for h in np.argsort(-iou[w]):
            h = int(h)
            if h in used or iou[w, h] < tol.iou_min:
                continue
            diff = abs(float(want.confidence[w]) - float(have.confidence[h]))
            if diff > tol.score_tol:
                continue
            used.add(h)
            ious.append(float(iou[w, h]))
            diffs.append(diff)
            break
    return len(used), ious, diffs


def compare_recognizers(
    reference: Sequence[Output], candidate: Sequence[Output], tol: Tolerances
) -> Validation:
    """`reference`/`candidate`: CTC probabilities (1 x T x C) per sample."""
    same = 0
    max_diff = 0.0
    for ref_out, cand_out in zip(reference, candidate, strict=True):
        (ref_ids, ref_conf), (cand_ids, cand_conf) = (
            ops.ctc_greedy(ref_out)[0],
            ops.ctc_greedy(cand_out)[0],
        )
        if ref_ids == cand_ids:
            same += 1
            diffs = [abs(a - b) for a, b in zip(ref_conf, cand_conf, strict=True)]
            max_diff = max([max_diff, *diffs])
    agree = same / len(reference) if reference else 1.0
    metrics = {"text_agreement": round(agree, 4), "max_char_conf_diff": round(max_diff, 4)}
    problems = []
    if agree < tol.min_match:
        problems.append(f"{len(reference) - same} of {len(reference)} texts differ from the source")
    if max_diff > tol.score_tol:
        problems.append(f"character confidences differ by {max_diff:.3f} > {tol.score_tol}")
    return Validation(not problems, len(reference), metrics, "; ".join(problems))
