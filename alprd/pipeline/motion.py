"""Motion gating (pure but for the resize: OpenCV's, or the GPU's for a frame
decoded there): a camera whose picture has not changed since the last frame that
was searched skips the search.

Each frame is shrunk to a small grey thumbnail and compared with the thumbnail of
the last frame that ran through the detectors: when fewer than `min_area` of its
pixels changed by more than `pixel_threshold` grey levels, the scene is still and
the frame is skipped, at most `max_skip_s` in a row (then one frame runs anyway).
Comparing with the last *searched* frame, not the previous one, means a slow
change (a car creeping in) adds up until it counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from alprd import ops
from alprd.ops import AnyImage

THUMB_WIDTH = 96


class MotionGate:
    def __init__(self, pixel_threshold: int = 12, min_area: float = 0.003, max_skip_s: float = 2.0):
        if not 0 <= pixel_threshold <= 255 or not 0 <= min_area <= 1 or max_skip_s < 0:
            raise ValueError("pixel_threshold in 0..255, min_area in 0..1, max_skip_s >= 0")
        self.pixel_threshold, self.min_area, self.max_skip_s = pixel_threshold, min_area, max_skip_s
        self._reference: np.ndarray | None = None
        self._searched_at = 0.0
        self.changed = 0.0  # fraction of pixels that changed in the last frame looked at

    def still(self, image: AnyImage, now: float, thumb: np.ndarray | None = None) -> bool:
        """True when `image` may be skipped; False means search it (and it becomes
        the new reference). `thumb`: its `thumbnails` entry, when the caller made
        those for a whole batch at once."""
        thumb = thumbnails([image])[0] if thumb is None else thumb
        ref = self._reference
        if ref is not None and ref.shape == thumb.shape:
            diff = cv2.absdiff(thumb, ref)
            self.changed = float(np.count_nonzero(diff > self.pixel_threshold)) / diff.size
            if self.changed < self.min_area and now - self._searched_at < self.max_skip_s:
                return True
        self._reference = thumb
        self._searched_at = now
        return False


def thumbnails(images: Sequence[AnyImage]) -> list[np.ndarray]:
    """The grey thumbnail `MotionGate.still` compares, of each image: frames on a
    GPU are shrunk there together and copied back at once (`ops.shrink_many`),
    not one copy a frame."""
    sizes = [(THUMB_WIDTH, max(1, round(THUMB_WIDTH * i.shape[0] / i.shape[1]))) for i in images]
    return [
        cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (3, 3), 0)
        for small in ops.shrink_many(images, sizes)
    ]
