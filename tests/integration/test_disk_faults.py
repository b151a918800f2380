"""A state directory that fills up or turns read-only at run time, on a real small
filesystem (a tmpfs mounted for the test; needs root, as CI runs): each output says
so once, the pipeline keeps running, the events wait in memory, and when space
returns they are all written, in order, with no partial line or file left behind."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_data
from structlog.testing import capture_logs
from support.daemon import DaemonProcess
from test_service import NL_VIDEO, camera, site, sock, write_config  # noqa: F401
from test_sinks import event

from alprd import config as cfgmod
from alprd.pipeline.stream import Snapshot
from alprd.pipeline.types import Plate, PlateRead, Text
from alprd.sinks.outputs import Outputs


class SmallDisk:
    """A tmpfs of `mb` MB at `path`: `fill()` takes every free byte, `free()` gives
    them back, `readonly(True|False)` remounts it."""

    def __init__(self, path: Path, mb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={mb}m,mode=0755", "tmpfs", str(path)],
            capture_output=True, text=True,
        )  # fmt: skip
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
        self.filler = path / ".filler"

    def fill(self) -> None:
        """Take every free byte, and keep taking what gets freed (a failed write
        cut back, a temporary file removed) until `free()`: full stays full."""
        self._fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._take()
        probe = self.path / ".probe"
        with pytest.raises(OSError) as exc:
            probe.write_bytes(b"x" * 8192)
        assert exc.value.errno == errno.ENOSPC
        probe.unlink(missing_ok=True)
        self._stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_full, daemon=True)
        self._keeper.start()

    def _take(self) -> None:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):  # to the last byte
            with contextlib.suppress(OSError):
                while True:
                    os.write(self._fd, b"\0" * size)

    def _keep_full(self) -> None:
        while not self._stop.wait(0.02):
            self._take()

    def free(self) -> None:
        if getattr(self, "_keeper", None) is not None:
            self._stop.set()
            self._keeper.join()
            self._keeper = None
            os.close(self._fd)
        self.filler.unlink(missing_ok=True)

    def readonly(self, on: bool) -> None:
        mode = "ro" if on else "rw"
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)

    def close(self) -> None:
        self.free()
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    d = SmallDisk(tmp_path / "state", mb=4)
    yield d
    d.close()


def outputs_on(tmp_path: Path, state: Path) -> Outputs:
    (tmp_path / "alprd.toml").write_text(
        f'[paths]\nroot = "."\nstate_dir = "{state}"\n'
        "[outputs]\nbacklog_retry_s = 0.01\n"
        "[outputs.jsonl]\nenabled = true\n"
    )
    return Outputs.open(cfgmod.load(tmp_path / "alprd.toml"))


def snapshot() -> Snapshot:
    rng = np.random.default_rng(0)  # noise: the JPEGs do not compress to nothing
    image = rng.integers(0, 255, (400, 600, 3), np.uint8)
    read = PlateRead(Plate((10, 20, 110, 50), 0.9, None), Text("ABC0000", (0.9,) * 7, ()), 0, 0.0)
    return Snapshot(image=image, read=read)


def stored(state: Path) -> tuple[list[str], list[str]]:
    """Plates in the SQLite store (by time) and in the JSONL file (by line)."""
    with sqlite3.connect(state / "reads.db") as db:
        rows = [r[0] for r in db.execute("SELECT plate FROM reads ORDER BY first_seen")]
    lines = (state / "reads.jsonl").read_text().splitlines()
    return rows, [json.loads(line)["plate"] for line in lines]  # every line whole JSON


@pytest.mark.faults  # faults: Scenario 8
def test_a_full_state_dir_delays_events_and_loses_none(tmp_path: Path, disk: SmallDisk) -> None:
    outputs = outputs_on(tmp_path, disk.path)
    try:
        with capture_logs() as logs:
            outputs.emit(event(0), snapshot())
            disk.fill()
            for i in range(1, 40):  # emit never raises; the pipeline goes on
                outputs.emit(event(i), snapshot())
            failed = [e for e in logs if e["event"] == "output_failed"]
            assert {e["output"] for e in failed} >= {"jsonl", "snapshots"}
            assert len(failed) == len({e["output"] for e in failed})  # once each, not per event
            assert all("space" in e["reason"] or "full" in e["reason"] for e in failed), failed
            assert outputs.backlog()["jsonl"] >= 1
            assert not list(disk.path.rglob("*.tmp"))  # no partial snapshot left
            disk.free()
            outputs.emit(event(40), snapshot())
            outputs.retry(now=time.monotonic() + 1)
            assert outputs.backlog() == {}, [e for e in logs if e["log_level"] == "error"]
            recovered = {e["output"] for e in logs if e["event"] == "output_recovered"}
            assert recovered >= {"jsonl", "snapshots"}
    finally:
        outputs.close()
    want = [f"ABC{i:04d}" for i in range(41)]
    rows, lines = stored(disk.path)
    assert rows == want and lines == want  # all of them, once, in order


@pytest.mark.faults  # faults: Scenario 8
def test_a_read_only_state_dir_keeps_events_until_it_is_writable(
    tmp_path: Path, disk: SmallDisk
) -> None:
    """Read-only when alprd starts (a filesystem the kernel remounted read-only
    after errors, a wrong ReadOnlyPaths=): each output says so with the path, the
    events wait, and the outputs open and write them all once it is writable."""
    disk.readonly(True)
    with capture_logs() as logs:
        outputs = outputs_on(tmp_path, disk.path)
        try:
            for i in range(10):
                outputs.emit(event(i), snapshot())
            failed = [e for e in logs if e["event"] == "output_failed"]
            assert {e["output"] for e in failed} == {"sqlite", "jsonl", "snapshots"}
            assert all("ead-only" in e["reason"] for e in failed), [e["reason"] for e in failed]
            assert all(str(disk.path) in e["reason"] for e in failed), failed
            assert outputs.backlog() == {"sqlite": 10, "jsonl": 10}
            disk.readonly(False)
            outputs.emit(event(10), snapshot())
            outputs.retry(now=time.monotonic() + 1)
            assert outputs.backlog() == {}
            recovered = {e["output"] for e in logs if e["event"] == "output_recovered"}
            assert recovered == {"sqlite", "jsonl", "snapshots"}
        finally:
            outputs.close()
    want = [f"ABC{i:04d}" for i in range(11)]
    assert stored(disk.path) == (want, want)


def test_a_backlog_beyond_its_bound_drops_the_oldest_with_a_warning(
    tmp_path: Path, disk: SmallDisk
) -> None:
    (tmp_path / "alprd.toml").write_text(
        f'[paths]\nroot = "."\nstate_dir = "{disk.path}"\n'
        "[outputs]\nbacklog_max = 5\nbacklog_retry_s = 0.01\n"
        "[outputs.sqlite]\nenabled = false\n[outputs.jsonl]\nenabled = true\n"
    )
    disk.readonly(True)
    outputs = Outputs.open(cfgmod.load(tmp_path / "alprd.toml"))
    try:
        with capture_logs() as logs:
            for i in range(8):
                outputs.emit(event(i))
            assert outputs.backlog() == {"jsonl": 5}
            [dropped] = [e for e in logs if e["event"] == "output_backlog_dropped"]
            assert dropped["output"] == "jsonl"
            disk.readonly(False)
            outputs.retry(now=time.monotonic() + 1)
    finally:
        outputs.close()
    lines = (disk.path / "reads.jsonl").read_text().splitlines()
    assert [json.loads(x)["plate"] for x in lines] == [f"ABC{i:04d}" for i in range(3, 8)]


@pytest.mark.faults  # faults: Scenario 8
@needs_data(NL_VIDEO, "video")
def test_the_daemon_keeps_reading_on_a_full_disk_and_stores_the_pass_when_space_returns(
    site: Path,  # noqa: F811
    sock,  # noqa: F811
) -> None:
    """The real daemon, its state dir on a small filesystem that fills up while a
    car passes: it keeps pinging the watchdog and reading, says which outputs fail,
    and once space returns the read reaches the store and the JSONL file."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    disk = SmallDisk(site / "state", mb=8)
    try:
        config = write_config(
            site, camera("rear", NL_VIDEO, fps=5), "[outputs.jsonl]\nenabled = true\n"
        )
        d = DaemonProcess(config, sock)
        try:
            sock.wait_for(lambda m: m.startswith("READY=1"), timeout=120)
            disk.fill()
            # the clip plays and its pass ends: the event has nowhere to go
            d.wait_event("output_failed", output="jsonl", timeout=120)
            sock.pump()
            pings = sock.messages.count("WATCHDOG=1")
            assert not (disk.path / "reads.jsonl").read_text().strip()
            disk.free()
            d.wait_event("output_recovered", output="jsonl")  # the next tick writes it
            sock.pump()
            assert sock.messages.count("WATCHDOG=1") > pings  # alive all along
        finally:
            code, events = d.stop()
        assert code == 0
        assert [e["plate"] for e in events if e["event"] == "plate_event"] == ["L417VS"]
        failed = {e["output"] for e in events if e["event"] == "output_failed"}
        assert {"jsonl", "snapshots"} <= failed
        recovered = {e["output"]: e for e in events if e["event"] == "output_recovered"}
        assert recovered["jsonl"]["replayed"] == 1
        reads = subprocess.run(
            [sys.executable, "-m", "alprd", "reads", "--json", "--config", str(config)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        [row] = [json.loads(line) for line in reads.stdout.splitlines()]
        assert row["plate"] == "L417VS"
        [line] = (disk.path / "reads.jsonl").read_text().splitlines()
        assert json.loads(line)["id"] == row["id"]
    finally:
        disk.close()


def test_a_camera_sample_cut_short_by_a_full_disk_leaves_the_one_before_whole(
    disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frames kept to validate rebuilt engines reuse their names: one that a
    full disk cut short must not replace the last good one (a model dropped then
    was rejected for `not a readable image`)."""
    import cv2

    from alprd import cameras

    monkeypatch.setattr(cameras, "SAMPLE_EVERY_S", 0.0)
    rng = np.random.default_rng(7)
    kept = cameras.Samples()
    for _ in range(cameras.SAMPLES_KEPT):
        kept.offer(disk.path, "cam0", rng.integers(0, 256, (240, 320, 3), np.uint8))
    first = disk.path / "cam0-0.jpg"
    before, paths = first.read_bytes(), kept.paths
    disk.fill()
    with capture_logs() as logs:
        kept.offer(disk.path, "cam0", rng.integers(0, 256, (240, 320, 3), np.uint8))  # cam0-0
    assert any(e["event"] == "sample_not_kept" for e in logs)
    assert first.read_bytes() == before and kept.paths == paths
    assert all(cv2.imread(str(p)) is not None for p in kept.paths)
    assert not list(disk.path.glob("*.part"))


def test_a_full_disk_is_what_the_outbox_says_not_a_failed_rollback(disk: SmallDisk) -> None:
    """SQLite may end the transaction itself when the disk fills mid-write: the error
    the outbox reports is then the full disk (not "cannot rollback"), and what was
    queued before stays queued, with more once space returns."""
    from support.servers import free_port
    from test_sinks import FAST, record

    from alprd.sinks.base import SinkError
    from alprd.sinks.outbox import Outbox
    from alprd.sinks.webhook import WebhookSink

    down = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", timeout_s=1)  # never delivered
    box = Outbox(disk.path / "outbox.db", [down], retry=FAST)
    try:
        box.put("webhook", record(0))
        disk.fill()
        with pytest.raises(SinkError) as exc:
            for i in range(1, 200):  # larger than the pages the database has free
                box.put("webhook", {**record(i), "note": "x" * 65536})
        assert "full" in str(exc.value) and "rollback" not in str(exc.value), exc.value
        disk.free()
        box.put("webhook", record(1000))
        assert box.pending("webhook") >= 2
    finally:
        box.close()
