"""Video files the tests write themselves: real MJPEG .avi files written by
OpenCV, with no vehicle in them (the daemon runs, nothing is read)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def grey_clip(
    path: Path, frames: int, fps: float = 10, size: tuple[int, int] = (320, 240), step: int = 1
) -> Path:
    """`frames` flat grey frames of `size` (width, height), frame i of grey level
    i * step (mod 255), at `fps`."""
    width, height = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        out.write(np.full((height, width, 3), (i * step) % 255, np.uint8))
    out.release()
    return path
