"""A detector engine with its pre- and post-processing: images in, boxes in image
pixels out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alprd import ops
from alprd.engines.base import Engine


class Detector:
    def __init__(
        self,
        engine: Engine,
        *,
        size: int | tuple[int, int],  # side, or (height, width)
        batch: int,
        conf: float,
        iou: float,
        max_det: int,
        keep: Sequence[int] | None = None,  # class ids to keep; None = all
    ) -> None:
        self.engine, self.batch = engine, batch
        self.height, self.width = (size, size) if isinstance(size, int) else size
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.keep = None if keep is None else np.asarray(sorted(keep), np.int64)

    def __call__(self, images: Sequence[ops.Image]) -> list[ops.Detections]:
        if not images:
            return []
        raw: np.ndarray | list[np.ndarray]
        if hasattr(self.engine, "run_frames"):  # letterboxed on the device (torch backend)
            raw, boxes = self._run_frames(images)
        else:
            raw, boxes = self._run_cpu(images)
        results = []
        for dets, lb, img in zip(
            ops.decode_yolo(raw, self.conf, self.iou, self.max_det), boxes, images, strict=True
        ):
            if self.keep is not None and len(dets):
                mask = np.isin(dets.class_id, self.keep)
                dets = ops.Detections(dets.xyxy[mask], dets.confidence[mask], dets.class_id[mask])
            xyxy = lb.to_image(dets.xyxy) if len(dets) else dets.xyxy
            h, w = img.shape[:2]
            xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
            xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
            results.append(ops.Detections(xyxy, dets.confidence, dets.class_id))
        return results

    def _run_cpu(self, images: Sequence[ops.Image]) -> tuple[np.ndarray, list[ops.Letterbox]]:
        boxed = [ops.letterbox(img, self.height, self.width) for img in images]
        tensor = ops.to_tensor([b for b, _ in boxed])
        outputs = []
        for start in range(0, len(images), self.batch):
            chunk = tensor[start : start + self.batch]
            n = len(chunk)
            if n < self.batch:  # fixed-batch engine: pad with copies, drop their results
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
            outputs.append(self.engine.run(chunk)[0][:n])
        return np.concatenate(outputs), [lb for _, lb in boxed]

    def _run_frames(
        self, images: Sequence[ops.Image]
    ) -> tuple[list[np.ndarray], list[ops.Letterbox]]:
        """Letterbox, inference and the score filter on the device; only the
        candidates of each frame come back (a list: their counts differ)."""
        run_frames = self.engine.run_frames  # type: ignore[attr-defined]
        outputs: list[np.ndarray] = []
        boxes: list[ops.Letterbox] = []
        for start in range(0, len(images), self.batch):
            chunk = list(images[start : start + self.batch])
            n = len(chunk)
            chunk += [chunk[-1]] * (self.batch - n)  # one shape per batch: one CUDA graph
            raw, lbs = run_frames(chunk, self.height, self.width, min_score=self.conf)
            outputs += raw[:n]
            boxes += lbs[:n]
        return outputs, boxes
