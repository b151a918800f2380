"""A detector engine with its pre- and post-processing: images in, boxes in image
pixels out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from alprd import ops
from alprd.engines.base import DeviceEngine, DeviceFrames, Engine, Pending, Region, is_device

#: what a detector takes: host frames, or frames its engine already uploaded
Frames = Sequence[ops.Image] | DeviceFrames

T = TypeVar("T")


def bucket(n: int, batch: int) -> int:
    """The batch `n` items run as on an engine that takes any batch (one CUDA
    graph per size, `any_batch`): the next power of two, at most `batch`. A few
    sizes to capture, and little padding."""
    size = 1
    while size < n:
        size *= 2
    return min(size, batch)


def split(items: Sequence[T], batch: int, any_batch: bool) -> list[tuple[list[T], int]]:
    """`items` in batches of at most `batch`, each padded with repeats of its last
    item to `batch` (an engine built for that batch only) or to its `bucket` size
    (`Engine.any_batch`); with how many of each are real (the padding's results
    are dropped)."""
    out = []
    for start in range(0, len(items), batch):
        chunk = list(items[start : start + batch])
        n = len(chunk)
        size = bucket(n, batch) if any_batch else batch
        out.append((chunk + [chunk[-1]] * (size - n), n))
    return out


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

    @property
    def on_device(self) -> bool:
        """Letterboxes on the device and takes frames already there (`DeviceEngine`)."""
        return self.engine.on_device

    def __call__(self, images: Frames) -> list[ops.Detections]:
        """Detections in each image. `images` may be frames already on the device
        (`DeviceEngine.upload`, when `on_device`)."""
        return self.launch(images).result()

    def launch(self, images: Frames) -> Pending[list[ops.Detections]]:
        """`self(images)`, collected later: on the device, the work is queued and
        `result()` waits for it; on the host it is done now."""
        if not len(images):
            return Pending.done([])
        arrays = images.arrays if isinstance(images, DeviceFrames) else images
        sizes = [img.shape[:2] for img in arrays]
        if is_device(engine := self.engine):
            found, boxes = self._on_device(engine, images, range(len(images)), None)
        else:
            found, boxes = self._run_cpu([ops.host(img) for img in arrays])
        return found.then(lambda f: self._finish(f, boxes, sizes))

    def regions(self, images: Frames, regions: Sequence[Region]) -> list[ops.Detections]:
        """Detections in each region, in the region's own pixels (what calling the
        detector on ``image[y1:y2, x1:x2]`` gives). On the device the regions are
        sampled from the frames there: no crop is copied or uploaded."""
        return self.launch_regions(images, regions).result()

    def launch_regions(
        self, images: Frames, regions: Sequence[Region]
    ) -> Pending[list[ops.Detections]]:
        """`regions`, collected later (see `launch`)."""
        if not regions:
            return Pending.done([])
        sizes = [(y2 - y1, x2 - x1) for _, x1, y1, x2, y2 in regions]
        if is_device(engine := self.engine) and isinstance(images, DeviceFrames):
            found, boxes = self._on_device(engine, images, range(len(regions)), regions)
        else:
            arrays = images.arrays if isinstance(images, DeviceFrames) else images
            crops = [ops.host(arrays[i])[y1:y2, x1:x2] for i, x1, y1, x2, y2 in regions]
            return self.launch(crops)
        return found.then(lambda f: self._finish(f, boxes, sizes))

    def _finish(self, found: ops.Candidates, boxes: list[ops.Letterbox],
                sizes: Sequence[tuple[int, int]]) -> list[ops.Detections]:  # fmt: skip
        """NMS over the whole batch, then every kept box back to its image's pixels
        (clipped to it), all at once; split per image."""
        kept = ops.suppress(found, self.iou, self.max_det)
        if len(kept):
            lb = np.array([(b.scale, b.pad_x, b.pad_y) for b in boxes], np.float32)[kept.image]
            hw = np.array(sizes, np.float32)[kept.image]
            xyxy = np.empty_like(kept.xyxy)
            xyxy[:, 0::2] = np.clip((kept.xyxy[:, 0::2] - lb[:, 1:2]) / lb[:, :1], 0, hw[:, 1:])
            xyxy[:, 1::2] = np.clip((kept.xyxy[:, 1::2] - lb[:, 2:]) / lb[:, :1], 0, hw[:, :1])
            kept = ops.Candidates(kept.image, xyxy, kept.confidence, kept.class_id)
        return kept.split(len(sizes))

    def _run_cpu(self, images: Sequence[ops.Image]
                 ) -> tuple[Pending[ops.Candidates], list[ops.Letterbox]]:  # fmt: skip
        resized = [ops.fitted(img, self.height, self.width) for img in images]
        batches = split(resized, self.batch, self.engine.any_batch)
        ran = self.engine.run_many(
            [ops.letterbox_tensor(chunk, self.height, self.width) for chunk, _ in batches]
        )
        found, start = [], 0
        for out, (_, n) in zip(ran, batches, strict=True):  # each batch's candidates
            c = ops.candidates(out[0][:n], self.conf, self.keep)  # (no joined copy)
            found.append(ops.Candidates(c.image + start, c.xyxy, c.confidence, c.class_id))
            start += n
        return Pending.done(ops.Candidates.concat(found)), [lb for _, lb in resized]

    def _on_device(
        self, engine: DeviceEngine, images: Frames, items: range, regions: Sequence[Region] | None
    ) -> tuple[Pending[ops.Candidates], list[ops.Letterbox]]:
        """Letterbox, inference and the score filter on the device, in batches of
        at most the engine's size, each padded with repeats to a `bucket` size (a
        few shapes, one CUDA graph each); only the candidates come back."""
        frames = images if isinstance(images, DeviceFrames) else engine.upload(list(images))
        found: list[tuple[Pending[ops.Candidates], int, int]] = []
        boxes: list[ops.Letterbox] = []
        start = 0
        for chunk, n in split(items, self.batch, engine.any_batch):
            if regions is None:
                got, lbs = engine.launch_frames(frames.take(chunk), self.height, self.width,
                                                min_score=self.conf, keep=self.keep)  # fmt: skip
            else:
                got, lbs = engine.launch_regions(frames, [regions[i] for i in chunk],
                                                 self.height, self.width, min_score=self.conf,
                                                 keep=self.keep)  # fmt: skip
            found.append((got, start, n))
            boxes += lbs[:n]
            start += n

        def collect() -> ops.Candidates:
            parts = []
            for got, start, n in found:
                c = got.result()
                real = c.take(np.flatnonzero(c.image < n))  # not the padding's
                parts.append(ops.Candidates(real.image + start, real.xyxy, real.confidence,
                                            real.class_id))  # fmt: skip
            return ops.Candidates.concat(parts)

        return Pending(collect), boxes
