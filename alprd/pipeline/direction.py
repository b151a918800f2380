"""Which way a pass went (pure): from the boxes of its first and last read, and
the way an arriving vehicle moves in the camera's picture (``cameras[].arriving``:
``down``, ``up``, ``left``, ``right``, ``towards`` the camera or ``away`` from it).

A move along the picture counts once the box's centre travelled at least
``min_shift`` box sizes (the box's height for up/down, width for left/right); a
move towards or away once the box's area grew or shrank by ``min_growth``. Less
than that, or no way configured: ``unknown``.
"""

from __future__ import annotations

from typing import Literal

from alprd.pipeline.types import Box

Way = Literal["down", "up", "left", "right", "towards", "away"]
Direction = Literal["arriving", "leaving", "unknown"]
WAYS: tuple[str, ...] = ("down", "up", "left", "right", "towards", "away")
_OPPOSITE = {"down": "up", "up": "down", "left": "right", "right": "left",
             "towards": "away", "away": "towards"}  # fmt: skip


def moved(first: Box, last: Box, min_shift: float, min_growth: float) -> set[str]:
    """The ways the box went from `first` to `last` (none, one or several)."""
    out: set[str] = set()
    w = max(1e-6, (first[2] - first[0] + last[2] - last[0]) / 2)
    h = max(1e-6, (first[3] - first[1] + last[3] - last[1]) / 2)
    dx = (last[0] + last[2] - first[0] - first[2]) / 2
    dy = (last[1] + last[3] - first[1] - first[3]) / 2
    if abs(dy) >= min_shift * h:
        out.add("down" if dy > 0 else "up")
    if abs(dx) >= min_shift * w:
        out.add("right" if dx > 0 else "left")
    a0 = max(1e-6, (first[2] - first[0]) * (first[3] - first[1]))
    a1 = (last[2] - last[0]) * (last[3] - last[1])
    if a1 >= a0 * (1 + min_growth):
        out.add("towards")
    elif a1 * (1 + min_growth) <= a0:
        out.add("away")
    return out


def direction(
    first: Box, last: Box, arriving: str, min_shift: float = 0.5, min_growth: float = 0.25
) -> Direction:
    """``arriving`` if the box went the way an arriving vehicle goes, ``leaving``
    if it went the opposite way, else ``unknown``."""
    if arriving not in _OPPOSITE:
        return "unknown"
    ways = moved(first, last, min_shift, min_growth)
    if arriving in ways:
        return "arriving"
    return "leaving" if _OPPOSITE[arriving] in ways else "unknown"
