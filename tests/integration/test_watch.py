"""The models/ watcher with a real watchdog observer and real files: every way a
file arrives is taken exactly once, only when complete; temp names are ignored."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from alprd.watch import Debouncer, ModelWatcher, is_candidate

QUIET = 0.6


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("best.pt", True),
        ("plate.onnx", True),
        (".best.pt.tmp", False),
        ("best.pt.part", False),
        ("best.pt~", False),
        (".best.pt.swp", False),
        ("#best.pt#", False),
        (".best.pt.Xy12Ab", False),  # rsync's temporary name
        ("plate-yolov8n.engine", False),
        ("plate-yolov8n.openvino.blob", False),
        ("plate-yolov8n.onnxruntime.onnx", False),
        ("plate-yolov8n.engine.json", False),
        ("notes.txt", False),
    ],
)
def test_candidates(name, taken):
    assert is_candidate(Path(name)) is taken


def test_debouncer_waits_for_a_stable_non_empty_file():
    d = Debouncer(quiet_s=1.0)
    stats = {Path("a.pt"): (10, 1)}
    d.touch(Path("a.pt"), 0.0, (10, 1))
    assert d.due(0.5, stats.get) == []
    stats[Path("a.pt")] = (20, 2)  # still growing
    assert d.due(1.2, stats.get) == []
    assert d.due(2.0, stats.get) == []
    assert d.due(2.3, stats.get) == [Path("a.pt")]
    d.touch(Path("b.pt"), 3.0, (0, 1))
    assert d.due(9.0, {Path("b.pt"): (0, 1)}.get) == []  # empty: not a model yet
    d.touch(Path("c.pt"), 3.0, (5, 1))
    assert d.due(9.0, {Path("b.pt"): (0, 1)}.get) == [] and d.waiting == [Path("b.pt")]  # c gone


#: A model file the tests write last to know the watcher has dealt with every
#: earlier change (it takes files in the order they settle): not recorded.
BARRIER = "zz-barrier.pt"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Path, list[str], int]] = []
        self.barriers = 0
        self.models = Path()
        self.lock = threading.Lock()

    def __call__(self, path: Path, roles: list[str]) -> None:
        with self.lock:
            if path.name == BARRIER:
                self.barriers += 1
            else:
                self.calls.append((path, roles, path.stat().st_size))


@pytest.fixture(params=["inotify", "poll"])
def watched(request, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    rec = Recorder()
    rec.models = models
    watcher = ModelWatcher(
        models,
        lambda p: ["plate"] if p.name in ("best.pt", BARRIER) else [],
        rec,
        quiet_s=QUIET,
        poll=request.param == "poll",
        poll_interval_s=0.2,
    )
    watcher.start()
    yield models, rec
    watcher.stop()


def until(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(0.02)


def settle(rec: Recorder, n: int) -> None:
    """Wait for `n` calls, then until the watcher has taken two barrier files
    written after them: a change still pending would have been taken by then (the
    second barrier settles in a later pass than anything due with the first)."""
    until(lambda: len(rec.calls) >= n)
    models = rec.models
    for _ in range(2):
        seen = rec.barriers
        (models / BARRIER).write_bytes(os.urandom(16))
        until(lambda seen=seen: rec.barriers > seen)


PAYLOAD = os.urandom(300_000)


def test_cp_in_place_in_chunks(watched):
    models, rec = watched
    with open(models / "best.pt", "wb") as f:
        for i in range(3):
            f.write(PAYLOAD[i * 100_000 : (i + 1) * 100_000])
            f.flush()
            time.sleep(0.15)
    settle(rec, 1)
    assert [(p.name, r, size) for p, r, size in rec.calls] == [("best.pt", ["plate"], 300_000)]


def test_temp_name_then_rename(watched):
    models, rec = watched
    tmp = models / ".best.pt.tmp"
    tmp.write_bytes(PAYLOAD)
    os.rename(tmp, models / "best.pt")
    settle(rec, 1)
    assert [(p.name, size) for p, _, size in rec.calls] == [("best.pt", 300_000)]


def test_mv_from_the_same_file_system(watched, tmp_path):
    models, rec = watched
    outside = tmp_path / "incoming"
    outside.mkdir()
    (outside / "best.pt").write_bytes(PAYLOAD)
    shutil.move(str(outside / "best.pt"), str(models / "best.pt"))
    settle(rec, 1)
    assert [(p.name, size) for p, _, size in rec.calls] == [("best.pt", 300_000)]


def test_overwrite_of_an_existing_model(watched):
    models, rec = watched
    (models / "best.pt").write_bytes(PAYLOAD)
    settle(rec, 1)
    (models / "best.pt").write_bytes(PAYLOAD[::-1] + b"v2")
    settle(rec, 2)
    assert [size for _, _, size in rec.calls] == [300_000, 300_002]


def test_a_slow_copy_is_never_taken_half_written(watched):
    """scp-style: the final name grows for longer than the quiet period in total,
    never pausing as long as it."""
    models, rec = watched
    with open(models / "best.pt", "wb") as f:
        for i in range(10):
            f.write(PAYLOAD[i * 30_000 : (i + 1) * 30_000])
            f.flush()
            time.sleep(QUIET / 3)
    settle(rec, 1)
    assert [size for _, _, size in rec.calls] == [300_000]


def test_temporary_and_own_files_are_ignored_and_unknown_models_logged_once(watched):
    models, rec = watched
    with capture_logs() as logs:
        for name in (".best.pt.swp", "best.pt~", "best.pt.part", "best.engine", "x.engine.json"):
            (models / name).write_bytes(b"x" * 10)
        (models / "other.pt").write_bytes(b"y" * 10)
        settle(rec, 0)
        (models / "other.pt").write_bytes(b"z" * 20)
        settle(rec, 0)
    assert rec.calls == []
    ignored = [e for e in logs if e["event"] == "model_ignored"]
    assert len(ignored) == 1 and ignored[0]["file"].endswith("other.pt")
    assert 'models.<role>.source = "other.pt"' in ignored[0]["hint"]
