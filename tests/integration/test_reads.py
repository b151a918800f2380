"""`alprd reads`: the SQLite store queried from the command line."""

from __future__ import annotations

import json
import time

import pytest
from conftest import run_alprd

from alprd.exitcodes import ExitCode
from alprd.pipeline.types import PlateEvent
from alprd.sinks.base import event_to_dict
from alprd.sinks.sqlite import SqliteSink
from alprd.web.store import parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 1000.0 - 90),
        ("30m", 1000.0 - 1800),
        ("1.5h", 1000.0 - 5400),
        ("2026-11-27T08:00:00", 1795766400.0),
        ("2026-11-27T09:00:00+01:00", 1795766400.0),
    ],
)
def test_parse_when(text, expected):
    assert parse_time(text, now=1000.0) == pytest.approx(expected)


def test_parse_when_rejects_nonsense():
    with pytest.raises(ValueError, match="expected 30m, 2h, 7d or a date"):
        parse_time("yesterday", now=0)


def event(plate: str, camera: str, t: float, fmt: str = "") -> PlateEvent:
    return PlateEvent(
        camera=camera, plate=plate, confidence=0.93, char_confidences=(0.9,) * len(plate),
        first_seen=t, last_seen=t + 2, first_frame=0, last_frame=10,
        plate_box=(1, 2, 3, 4), vehicle_box=None, vehicle_class="car", reads=7, track_id=1,
        format=fmt,
    )  # fmt: skip


@pytest.fixture
def store(write_config, tmp_path):
    config = write_config('[paths]\nroot = ".."\n')
    (tmp_path / "state").mkdir()
    sink = SqliteSink(tmp_path / "state" / "reads.db")
    now = time.time()
    for i, (plate, camera, age, fmt) in enumerate(
        [("L417VS", "gate", 7200, "nl"), ("L417VX", "yard", 600, ""), ("AB123C", "gate", 60, "")]
    ):
        sink.write(event_to_dict(event(plate, camera, now - age, fmt), f"id{i}"))
    sink.close()
    return config


def test_filters_and_json(store):
    def plates(*args: str) -> list[str]:
        proc = run_alprd("reads", "--json", "--config", str(store), *args)
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line)["plate"] for line in proc.stdout.splitlines()]

    assert plates() == ["AB123C", "L417VX", "L417VS"]  # newest first
    assert plates("--plate", "L417V?") == ["L417VX", "L417VS"]
    assert plates("--camera", "gate") == ["AB123C", "L417VS"]
    assert plates("--since", "1h") == ["AB123C", "L417VX"]
    assert plates("--until", "5m") == ["L417VX", "L417VS"]
    assert plates("--limit", "1") == ["AB123C"]
    proc = run_alprd("reads", "--json", "--config", str(store), "--plate", "L417V?")
    assert [json.loads(line)["format"] for line in proc.stdout.splitlines()] == ["", "nl"]


def test_table(store):
    proc = run_alprd("reads", "--config", str(store))
    assert proc.returncode == 0
    assert "L417VS" in proc.stdout and "gate" in proc.stdout and "0.93" in proc.stdout
    assert "format" in proc.stdout
    [row] = [line for line in proc.stdout.splitlines() if "L417VS" in line]
    assert row.split()[-1] == "nl"  # the format its plate fits, last column


def test_no_store_yet(write_config):
    proc = run_alprd("reads", "--config", str(write_config("")))
    assert proc.returncode == ExitCode.FAILURE and "nothing read yet" in proc.stderr
