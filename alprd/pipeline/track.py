"""A small IoU tracker (pure; the caller passes the time). One per camera.

Each new box joins the live track it overlaps most (IoU >= ``iou_min``); failing
that, the nearest track whose centre is within ``max_shift`` box diagonals (a
vehicle moves far between frames at a low frame rate). A track ends in a frame
that misses it when it has not been seen for ``max_age_s`` and was missed in
``min_misses`` frames in a row: a long gap between processed frames (a busy
host, frames dropped) does not end a track whose vehicle is still there.
`expire` ends tracks by age alone, for a camera that sends no frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from alprd.pipeline.geometry import centre, iou
from alprd.pipeline.types import Box


@dataclass
class Track:
    id: int
    box: Box
    first_time: float
    last_time: float
    hits: int = 1
    misses: int = 0  # processed frames in a row without it


class Tracker:
    def __init__(
        self,
        *,
        iou_min: float = 0.3,
        max_shift: float = 0.5,
        max_age_s: float = 1.5,
        min_misses: int = 2,
    ):
        if not 0 < iou_min <= 1:
            raise ValueError("iou_min must be in (0, 1]")
        if max_shift < 0 or max_age_s <= 0 or min_misses < 1:
            raise ValueError("max_shift must be >= 0, max_age_s > 0 and min_misses >= 1")
        self.iou_min, self.max_shift, self.max_age_s = iou_min, max_shift, max_age_s
        self.min_misses = min_misses
        self._tracks: dict[int, Track] = {}
        self._next_id = 1

    @property
    def live(self) -> list[Track]:
        return list(self._tracks.values())

    def hold(self, now: float) -> None:
        """A frame in which nothing moved (motion gating skipped it): every live
        track is where it was, seen now."""
        for t in self._tracks.values():
            t.last_time = now

    def update(self, boxes: Sequence[Box], now: float) -> tuple[list[int], list[Track]]:
        """Assign each box a track id (same order as `boxes`); returns the ids and
        the tracks that ended (missed here, not seen for longer than max_age_s
        and missed in min_misses frames in a row)."""
        ids = [0] * len(boxes)
        free = dict(self._tracks)
        pairs = sorted(
            ((iou(b, t.box), i, t.id) for i, b in enumerate(boxes) for t in free.values()),
            reverse=True,
        )
        for score, i, tid in pairs:
            if score < self.iou_min:
                break
            if ids[i] or tid not in free:
                continue
            ids[i] = tid
            del free[tid]
        for i, b in enumerate(boxes):
            if ids[i]:
                continue
            near = self._nearest(b, free.values())
            if near is not None:
                ids[i] = near.id
                del free[near.id]
        for i, b in enumerate(boxes):
            if ids[i]:
                t = self._tracks[ids[i]]
                t.box, t.last_time, t.hits, t.misses = b, now, t.hits + 1, 0
            else:
                ids[i] = self._next_id
                self._tracks[self._next_id] = Track(self._next_id, b, now, now)
                self._next_id += 1
        ended = []
        for t in free.values():
            t.misses += 1
            if now - t.last_time > self.max_age_s and t.misses >= self.min_misses:
                ended.append(t)
                del self._tracks[t.id]
        return ids, ended

    def expire(self, now: float) -> list[Track]:
        """End the tracks not seen for longer than max_age_s, missed or not (a
        camera that sends no frames: nothing will miss them)."""
        ended = [t for t in self._tracks.values() if now - t.last_time > self.max_age_s]
        for t in ended:
            del self._tracks[t.id]
        return ended

    def _nearest(self, box: Box, tracks: Iterable[Track]) -> Track | None:
        cx, cy = centre(box)
        best, best_d = None, math.inf
        for t in tracks:
            tx, ty = centre(t.box)
            diag = math.hypot(t.box[2] - t.box[0], t.box[3] - t.box[1])
            d = math.hypot(cx - tx, cy - ty)
            if d <= self.max_shift * diag and d < best_d:
                best, best_d = t, d
        return best

    def finish(self) -> list[Track]:
        """End every live track (end of a file, shutdown)."""
        ended = list(self._tracks.values())
        self._tracks.clear()
        return ended
