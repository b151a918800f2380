"""A camera's frame-rate limit (`cameras[].fps`): which frames of a source are kept.
Timestamps in, decisions out; no clock."""

from __future__ import annotations

import itertools
import random

import pytest

from alprd.pipeline.source import Pace


def kept_per_second(native: float, fps: float, seconds: float = 60.0, jitter: float = 0.003,
                    seed: int = 1) -> float:  # fmt: skip
    """Frames/s kept of a `native` frames/s source whose frames arrive up to
    `jitter` seconds early or late."""
    rng = random.Random(seed)
    pace = Pace(fps)
    times = [i / native + rng.uniform(-jitter, jitter) for i in range(int(seconds * native))]
    return sum(pace.keep(t) for t in times) / seconds


@pytest.mark.parametrize("native", [50.0, 30.0, 29.97, 25.0, 15.0, 12.5])
@pytest.mark.parametrize("fps", [25.0, 10.0, 5.0])
def test_the_rate_kept_is_the_limit_or_the_source(native, fps):
    # e.g. a 25 frames/s camera at the default 5 keeps 5 (not 4.5), a 30 one at 25
    # keeps 25 (not 15: every other frame)
    assert kept_per_second(native, fps) == pytest.approx(min(native, fps), rel=0.01)


def test_a_files_known_interval_keeps_the_frames_nearest_each_slot():
    pace = Pace(2.0)
    kept = [i for i in range(20) if pace.keep(i / 10.0, interval=0.1)]
    assert kept == [0, 5, 10, 15]


def test_after_a_stall_the_schedule_starts_again_without_a_burst():
    pace = Pace(10.0)
    before = [t / 30 for t in range(90)]  # 3 s of a 30 frames/s camera, then 7 s of nothing
    after = [10.0 + t / 30 for t in range(90)]
    kept = [t for t in before + after if pace.keep(t)]
    resumed = [t for t in kept if t >= 10.0]
    assert resumed[0] == 10.0  # the first frame after the stall is kept
    gaps = [b - a for a, b in itertools.pairwise(resumed)]
    assert min(gaps) > 0.09  # ... and no frames to catch up: one per 1/fps
    assert len(resumed) == pytest.approx(30, abs=1)
