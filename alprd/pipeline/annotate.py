"""Draw what was found on a frame, so a person can look (``alprd detect --save``)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2

from alprd.ops import Image
from alprd.pipeline.types import Plate, Vehicle

VEHICLE = (255, 160, 0)
PLATE = (0, 220, 0)


def draw(image: Image, vehicles: Sequence[Vehicle], plates: Sequence[tuple[Plate, str]]) -> Image:
    out = image.copy()
    thick = max(1, round(min(out.shape[:2]) / 400))
    for v in vehicles:
        x1, y1, x2, y2 = map(int, v.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), VEHICLE, thick)
        _label(out, f"{v.label} {v.confidence:.2f}", x1, y1, VEHICLE, thick)
    for p, text in plates:
        x1, y1, x2, y2 = map(int, p.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), PLATE, thick + 1)
        _label(out, text or "?", x1, y2 + 4 + 22 * thick, PLATE, thick, scale=0.9)
    return out


def _label(
    img: Image,
    text: str,
    x: int,
    y: int,
    colour: tuple[int, int, int],
    thick: int,
    scale: float = 0.6,
) -> None:
    s = scale * thick
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, s, thick)
    y = max(h + 4, y)
    cv2.rectangle(img, (x, y - h - 6), (x + w + 6, y), colour, -1)
    cv2.putText(
        img, text, (x + 3, y - 4), cv2.FONT_HERSHEY_SIMPLEX, s, (0, 0, 0), thick, cv2.LINE_AA
    )
