"""Event snapshots: real JPEG files, the quota enforced oldest first."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from alprd.sinks.snapshots import SnapshotStore, Stored, over_quota


@pytest.mark.parametrize(
    ("sizes_mtimes", "quota", "deleted"),
    [
        ([(10, 1), (10, 2), (10, 3)], 30, []),
        ([(10, 1), (10, 2), (10, 3)], 25, ["f0"]),
        ([(10, 3), (10, 1), (10, 2)], 15, ["f1", "f2"]),  # oldest first, whatever the order
        ([(50, 1)], 10, ["f0"]),
    ],
)
def test_over_quota(sizes_mtimes, quota, deleted):
    files = [Stored(Path(f"f{i}"), s, m) for i, (s, m) in enumerate(sizes_mtimes)]
    assert [str(f.path) for f in over_quota(files, quota)] == deleted


def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)  # noise: JPEGs of real size


def test_save_writes_both_crops(tmp_path):
    store = SnapshotStore(tmp_path / "snaps", quota_mb=10)
    paths = store.save("ev1", "gate", frame(), (100, 200, 200, 240), (50, 100, 400, 400))
    assert [Path(p).name for p in paths] == ["ev1-plate.jpg", "ev1-vehicle.jpg"]
    plate = cv2.imread(paths[0])
    assert plate.shape == (56, 120, 3)  # the plate box grown 10% / 20% per side
    assert Path(paths[0]).parent.parent.name == "gate"
    assert store.save("ev2", "gate", frame(), (10, 10, 60, 30), None)[0].endswith("ev2-plate.jpg")


def test_quota_deletes_the_oldest(tmp_path):
    store = SnapshotStore(tmp_path / "snaps", quota_mb=0.2)
    kept = [store.save(f"ev{i}", "gate", frame(), (0, 0, 200, 150), None)[0] for i in range(12)]
    on_disk = sorted(p.name for p in (tmp_path / "snaps").rglob("*.jpg"))
    size = sum(p.stat().st_size for p in (tmp_path / "snaps").rglob("*.jpg"))
    assert size <= 200_000 and store.deleted > 0
    assert Path(kept[-1]).name in on_disk and Path(kept[0]).name not in on_disk
    # A new store finds what is there and keeps enforcing.
    again = SnapshotStore(tmp_path / "snaps", quota_mb=0.05)
    again.save("late", "gate", frame(), (0, 0, 200, 150), None)
    assert sum(p.stat().st_size for p in (tmp_path / "snaps").rglob("*.jpg")) <= 50_000
