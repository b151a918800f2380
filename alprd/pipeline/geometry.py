"""Pure geometry on frame coordinates: boxes, crops, zones."""

from __future__ import annotations

from collections.abc import Sequence

from alprd.pipeline.types import Box

Point = tuple[float, float]

#: a plate's surround in its snapshot, per side, as fractions of its width and height
PLATE_SURROUND = (0.1, 0.2)


def clip_box(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel box inside a width x height image (may be empty)."""
    x1, y1, x2, y2 = box
    return (
        max(0, min(width, int(x1))),
        max(0, min(height, int(y1))),
        max(0, min(width, round(x2))),
        max(0, min(height, round(y2))),
    )


def expand(box: Box, fx: float, fy: float) -> Box:
    """Grow (or shrink, if negative) a box by fractions of its width and height per side."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (x1 - fx * w, y1 - fy * h, x2 + fx * w, y2 + fy * h)


def union(a: Box, b: Box) -> Box:
    """The smallest box holding both."""
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def shift(box: Box, dx: float, dy: float) -> Box:
    """The box moved by (dx, dy)."""
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def centre(box: Box) -> Point:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def inside(point: Point, polygon: Sequence[Point]) -> bool:
    """Ray casting: is `point` inside `polygon` (vertices in order)? Points exactly
    on an edge may go either way."""
    x, y = point
    result = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < cross:
                result = not result
    return result
