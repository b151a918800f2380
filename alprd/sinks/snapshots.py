"""Event snapshots: the plate crop and the vehicle crop of each event's best read,
as JPEG files under state_dir/snapshots/<camera>/<YYYY-MM-DD>/, within a disk quota
enforced oldest first."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from alprd.log import get_logger
from alprd.ops import Image
from alprd.pipeline import geometry
from alprd.pipeline.types import Box
from alprd.sinks.base import SinkError

log = get_logger("alprd.snapshots")


@dataclass(frozen=True)
class Stored:
    path: Path
    size: int
    mtime: float


def over_quota(files: Sequence[Stored], quota_bytes: int) -> list[Stored]:
    """Pure: which files to delete, oldest first, to bring the total under the quota."""
    total = sum(f.size for f in files)
    doomed = []
    for f in sorted(files, key=lambda f: (f.mtime, str(f.path))):
        if total <= quota_bytes:
            break
        doomed.append(f)
        total -= f.size
    return doomed


class SnapshotStore:
    def __init__(self, root: Path, quota_mb: float, quality: int = 90) -> None:
        self.root, self.quota = root, int(quota_mb * 1e6)
        self.quality = quality
        root.mkdir(parents=True, exist_ok=True)
        found = []
        for p in root.rglob("*.jpg"):
            st = p.stat()
            found.append(Stored(p, st.st_size, st.st_mtime))
        self._files = deque(sorted(found, key=lambda f: f.mtime))
        self._total = sum(f.size for f in found)
        self.deleted = 0

    def save(
        self, event_id: str, camera: str, image: Image, plate_box: Box, vehicle_box: Box | None
    ) -> list[str]:
        """Write the crops; returns their paths. SinkError when they cannot be written."""
        day = time.strftime("%Y-%m-%d", time.gmtime())
        folder = self.root / camera / day
        h, w = image.shape[:2]
        crops = [("plate", geometry.expand(plate_box, *geometry.PLATE_SURROUND))]
        if vehicle_box is not None:
            crops.append(("vehicle", vehicle_box))
        paths = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for kind, box in crops:
                x1, y1, x2, y2 = geometry.clip_box(box, w, h)
                if x2 - x1 < 2 or y2 - y1 < 2:
                    continue
                ok, jpeg = cv2.imencode(
                    ".jpg", image[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, self.quality]
                )
                if not ok:
                    raise SinkError(f"cannot encode the {kind} snapshot")
                path = folder / f"{event_id}-{kind}.jpg"
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(jpeg.tobytes())
                os.replace(tmp, path)
                self._files.append(Stored(path, len(jpeg), time.time()))
                self._total += len(jpeg)
                paths.append(str(path))
        except OSError as exc:  # e.g. a full disk: leave no partial file behind
            for leftover in folder.glob(f".{event_id}-*.tmp"):
                leftover.unlink(missing_ok=True)
            raise SinkError(f"{folder}: cannot write snapshots: {exc}") from exc
        self._enforce()
        return paths

    def remove(self, paths: Iterable[str | Path]) -> int:
        """Delete these snapshots (of events no longer kept) if they are this
        store's; how many were deleted."""
        gone = {Path(p) for p in paths}
        mine = [f for f in self._files if f.path in gone]
        for f in mine:
            try:
                f.path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("snapshot_not_deleted", file=str(f.path), reason=str(exc))
                gone.discard(f.path)
        self._files = deque(f for f in self._files if f.path not in gone)
        self._total = sum(f.size for f in self._files)
        return len([f for f in mine if f.path in gone])

    def _enforce(self) -> None:
        if self._total <= self.quota:
            return
        doomed = over_quota(list(self._files), self.quota)
        gone = {f.path for f in doomed}
        for f in doomed:
            try:
                f.path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("snapshot_not_deleted", file=str(f.path), reason=str(exc))
        self._files = deque(f for f in self._files if f.path not in gone)
        self._total -= sum(f.size for f in doomed)
        self.deleted += len(doomed)
        log.info("snapshots_pruned", deleted=len(doomed), kept_mb=round(self._total / 1e6, 1))
