"""What a pass keeps for its snapshot: the region its snapshot files show, copied
out of the frame (which is then free to go), giving the same files as the frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alprd.pipeline.stream import Snapshot
from alprd.pipeline.types import Plate, PlateRead, Text, Vehicle
from alprd.sinks.snapshots import SnapshotStore


def frame() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, (720, 1280, 3), np.uint8)


def read(plate_box, vehicle_box=None) -> PlateRead:
    vehicle = Vehicle(vehicle_box, 0.8, "car") if vehicle_box is not None else None
    return PlateRead(Plate(plate_box, 0.9, vehicle), Text("AB123CD", (0.9,) * 7, ()), 0, 0.0)


CAR = (450.0, 250.0, 900.0, 620.0)
CASES = {
    "plate inside its vehicle": read((600.4, 500.2, 700.6, 530.0), CAR),
    "plate's surround beyond the vehicle": read((440.0, 600.0, 560.0, 640.0), CAR),
    "at the frame's edge": read((1200.0, 700.0, 1279.0, 719.5), (1000.0, 500.0, 1280.0, 720.0)),
    "no vehicle": read((100.0, 100.0, 180.0, 120.0)),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_the_region_is_a_copy_and_its_files_are_the_frames(tmp_path, name):
    image, r = frame(), CASES[name]
    region = Snapshot.around(image, r)
    assert not np.shares_memory(region.image, image)
    assert region.image.size < image.size / 2
    whole = Snapshot(image, r)
    a = SnapshotStore(tmp_path / "a", quota_mb=10).save("ev", "cam", whole.image, *whole.boxes())
    b = SnapshotStore(tmp_path / "b", quota_mb=10).save("ev", "cam", region.image, *region.boxes())
    assert [p.rsplit("-", 1)[1] for p in a] == [p.rsplit("-", 1)[1] for p in b]
    expected = ["plate.jpg"] + (["vehicle.jpg"] if r.plate.vehicle else [])
    assert [p.rsplit("-", 1)[1] for p in a] == expected
    for pa, pb in zip(a, b, strict=True):
        assert Path(pa).read_bytes() == Path(pb).read_bytes()


def test_the_region_holds_the_read_where_it_was():
    image, r = frame(), CASES["plate inside its vehicle"]
    region = Snapshot.around(image, r)
    assert region.origin == (450, 250)
    (px1, py1, _, _), vehicle = region.boxes()
    assert (px1, py1) == pytest.approx((150.4, 250.2)) and vehicle == (0.0, 0.0, 450.0, 370.0)
    assert np.array_equal(region.image, image[250:620, 450:900])
