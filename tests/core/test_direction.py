"""Which way a pass went, from the boxes of its first and last read."""

from __future__ import annotations

import pytest

from alprd.pipeline.direction import direction, moved
from alprd.pipeline.types import PassKey, Plate, PlateRead, Text, Vehicle
from alprd.pipeline.vote import Voter

BOX = (100.0, 100.0, 200.0, 150.0)  # 100 x 50


@pytest.mark.parametrize(
    ("last", "ways"),
    [((100.0, 130.0, 200.0, 180.0), {"down"}),  # 30 px = 0.6 heights
     ((100.0, 110.0, 200.0, 160.0), set()),  # 10 px: not yet
     ((40.0, 100.0, 140.0, 150.0), {"left"}),
     ((80.0, 90.0, 220.0, 160.0), {"towards"}),  # area x1.96, centre still
     ((120.0, 110.0, 180.0, 140.0), {"away"}),
     ((160.0, 160.0, 320.0, 240.0), {"down", "right", "towards"})],
)  # fmt: skip
def test_the_ways_a_box_went(last, ways):
    assert moved(BOX, last, min_shift=0.5, min_growth=0.25) == ways


def test_arriving_leaving_or_unknown_by_the_cameras_way():
    down = (100.0, 130.0, 200.0, 180.0)
    assert direction(BOX, down, "down") == "arriving"
    assert direction(BOX, down, "up") == "leaving"
    assert direction(BOX, down, "left") == "unknown"  # it went neither way of that axis
    assert direction(BOX, down, "") == "unknown"  # no way configured
    assert direction(BOX, (80.0, 90.0, 220.0, 160.0), "away") == "leaving"


def read(t: float, box: tuple[float, float, float, float], vehicle: bool = True) -> PlateRead:
    v = Vehicle((box[0] - 50, box[1] - 100, box[2] + 50, box[3] + 20), 0.9, "car")
    return PlateRead(Plate(box, 0.9, v if vehicle else None), Text("AB123", (0.9,) * 5), 0, t)


def test_a_pass_goes_the_way_of_its_earliest_and_latest_reads_not_its_best():
    v = Voter("gate", min_agreeing=0, max_reads=2, dedupe_window_s=0,
              travel=lambda a, b: direction(a, b, "down"))  # fmt: skip
    key = PassKey("vehicle", 1)
    for t, y in [(2.0, 140.0), (0.0, 100.0), (1.0, 120.0), (3.0, 200.0)]:  # out of order
        v.add(key, read(t, (100.0, y, 200.0, y + 50)))
    assert v.end(key).direction == "arriving"
    v.add(PassKey("plate", 2), read(100.0, BOX, vehicle=False))  # one read: nothing to tell
    assert v.end(PassKey("plate", 2)).direction == "unknown"
