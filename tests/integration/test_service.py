"""The daemon's conversation with systemd, through a stand-in NOTIFY_SOCKET:
start-up STATUS lines, EXTEND_TIMEOUT_USEC while an engine builds, READY=1,
WATCHDOG=1, RELOADING=1/READY=1, STOPPING=1. Real engines, real camera threads."""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import sys
import time
import urllib.request
import weakref
from pathlib import Path

import cv2
import pytest
from conftest import SHARED_DATA, copy_models, needs_data
from support.daemon import DaemonProcess
from support.media import grey_clip
from support.notify_socket import NotifySocket
from support.servers import free_port

from alprd import config as cfgmod
from alprd import heap, settings
from alprd.exitcodes import ExitCode

NL_VIDEO = SHARED_DATA / "videos" / "rear-nl-L417VS.mp4"


@pytest.fixture
def site(tmp_path):
    copy_models(tmp_path / "models")
    grey_clip(tmp_path / "clip.avi", 600)
    etc = tmp_path / "etc"
    etc.mkdir()
    return tmp_path


def write_config(site: Path, cameras: str, extra: str = "", engines: str = "") -> Path:
    path = site / "etc" / "alprd.toml"
    path.write_text(
        '[paths]\nroot = ".."\n[engines]\nbackend = "openvino"\n'
        + engines
        + "[service]\nextend_timeout_s = 3\nhealth_interval_s = 1\n"
        + extra
        + cameras
    )
    return path


def camera(name: str, url: Path | str, fps: float = 10) -> str:
    return f'[[cameras]]\nname = "{name}"\nurl = "{url}"\nfps = {fps}\n'


@pytest.fixture
def sock(tmp_path):
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


# faults: Scenario 11 (invalid config at reload) and 9 (SIGTERM while frames flow)
@pytest.mark.faults
def test_startup_builds_with_extend_then_ready_watchdog_reload_stop(site, sock):
    config = write_config(site, camera("yard", site / "clip.avi"))
    d = DaemonProcess(config, sock)
    try:
        ready = sock.wait_for(lambda m: m.startswith("READY=1"), timeout=120)
        engines = "vehicle=openvino plate=openvino ocr=openvino"
        assert ready == f"READY=1\nSTATUS=running: 1 camera, engines {engines}"
        msgs = sock.messages
        before = msgs[: msgs.index(ready)]
        assert before[0] == "STATUS=loading config"
        statuses = [m for m in before if m.startswith("STATUS=")]
        assert "STATUS=loading engines 1/3 (vehicle)" in statuses
        assert "STATUS=loading engines 3/3 (ocr)" in statuses
        assert statuses[-1] == "STATUS=opening cameras"
        # Every engine was stale: each build re-sent EXTEND_TIMEOUT_USEC (3 s, every 1 s).
        extends = [m for m in before if m.startswith("EXTEND_TIMEOUT_USEC=")]
        assert len(extends) >= 3 and set(extends) == {"EXTEND_TIMEOUT_USEC=3000000"}
        assert any(s.startswith("STATUS=building plate engine (openvino, fp16)") for s in statuses)

        # The loop pings the watchdog (every 0.5 s for WatchdogSec=1).
        took = sock.wait_count("WATCHDOG=1", 4, since=len(sock.messages), timeout=10)
        assert took < 3.0, took  # 4 pings: 1.5-2 s at one every 0.5 s

        # Reload with a second camera: RELOADING=1 + MONOTONIC_USEC, then READY=1.
        write_config(site, camera("yard", site / "clip.avi") + camera("gate", site / "clip.avi"))
        d.proc.send_signal(signal.SIGHUP)
        reloading = sock.wait_for(lambda m: m.startswith("RELOADING=1"))
        assert reloading.splitlines()[1].startswith("MONOTONIC_USEC=")
        assert sock.wait_for(lambda m: "running: 2 cameras" in m).startswith("READY=1")

        # An invalid config at reload: logged with its key path, the old one keeps running.
        config.write_text(config.read_text().replace("fps = 10", "fps = -1", 1))
        n = len(sock.messages)
        d.proc.send_signal(signal.SIGHUP)
        sock.wait_for(lambda m: m.startswith("RELOADING=1") and m not in sock.messages[:n])
        # READY again with the old config's state (both cameras, still generation 1),
        # and the loop goes on pinging the watchdog
        deadline = time.monotonic() + 30
        while not [m for m in sock.messages[n:] if m.startswith("READY=1")]:
            assert time.monotonic() < deadline, sock.messages[n:]
            sock.pump()
        [again] = [m for m in sock.messages[n:] if m.startswith("READY=1")]
        assert "running: 2 cameras" in again and "(config generation 1)" in again, again
        n = len(sock.messages)
        while sock.messages[n:].count("WATCHDOG=1") < 2:
            assert time.monotonic() < deadline, sock.messages[n:]
            sock.pump()
        assert d.proc.poll() is None
    finally:
        code, events = d.stop()
    assert code == 0
    sock.pump()
    assert sock.messages[-1] == "STOPPING=1\nSTATUS=stopping"
    names = [e["event"] for e in events]
    assert names.count("engine_built") == 3
    invalid = [e for e in events if e["event"] == "config_invalid"]
    assert len(invalid) == 1 and "cameras[0].fps: must be > 0" in invalid[0]["problem"]
    assert invalid[0]["level"] == "error"
    assert "health" in names and "alprd_stopped" in names
    # frames per batch: one frame of each camera that had one, two cameras here
    batches = [e["batch"] for e in events if e["event"] == "health"]
    assert any(1.0 <= b <= 2.0 for b in batches) and all(0.0 <= b <= 2.0 for b in batches)
    stopped = [e for e in events if e["event"] == "alprd_stopped"]
    assert stopped[0]["within_deadline"] is True


# faults: Scenario 11: invalid config at start
@pytest.mark.faults
def test_a_config_error_at_start_exits_with_the_config_code(site, sock):
    config = write_config(site, camera("yard", site / "clip.avi", fps=0))
    d = DaemonProcess(config, sock)
    d.proc.wait(timeout=60)
    code, events = d.stop()
    assert code == ExitCode.CONFIG
    [err] = [e for e in events if e["event"] == "config_invalid"]
    assert "cameras[0].fps" in err["problem"]
    assert not any(m.startswith("READY=1") for m in sock.messages)


def test_background_startup_is_ready_at_once_and_swaps_later(site, sock):
    config = write_config(site, camera("yard", site / "clip.avi"))
    config.write_text(
        config.read_text().replace("[service]\n", '[service]\nstartup = "background"\n')
    )
    d = DaemonProcess(config, sock)
    try:
        ready = sock.wait_for(lambda m: m.startswith("READY=1"), timeout=120)
        assert "onnxruntime" in ready  # served at once by ONNX Runtime
        swapped = sock.wait_for(
            lambda m: m.startswith("STATUS=running") and "onnxruntime" not in m, timeout=120
        )
        assert "vehicle=openvino#2 plate=openvino#2 ocr=openvino#2" in swapped
    finally:
        code, events = d.stop()
    assert code == 0
    assert {e["model"] for e in events if e["event"] == "engine_swapped"} == {
        "vehicle",
        "plate",
        "ocr",
    }


@needs_data(NL_VIDEO, "video")
def test_a_camera_pass_becomes_one_event_and_a_dead_camera_does_not_stop_the_loop(site, sock):
    config = write_config(
        site,
        camera("rear", NL_VIDEO, fps=5) + camera("dead", "rtsp://127.0.0.1:9/none", fps=5),
        "[sources]\nreconnect_initial_s = 0.1\nreconnect_max_s = 0.5\nopen_timeout_s = 1\n"
        "[outputs.jsonl]\nenabled = true\n",
        engines="lanes = 2\n",  # two batches in flight, as on a GPU: same events
    )
    port = free_port()
    config.write_text(config.read_text() + f"[metrics]\nport = {port}\n")
    d = DaemonProcess(config, sock)
    try:
        sock.wait_for(lambda m: m.startswith("READY=1"), timeout=120)
        written = site / "state" / "reads.jsonl"
        deadline = time.monotonic() + 60  # the 5 s clip plays, its pass ends: the event
        while not (written.is_file() and written.read_text().strip()):
            assert time.monotonic() < deadline, "no event written: " + "".join(d.lines[-40:])
            time.sleep(0.1)
        sock.pump()
        assert sock.messages.count("WATCHDOG=1") >= 8  # every 0.5 s while the clip plays

        def status_now() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "alprd", "status", "--config", str(config)],
                capture_output=True, text=True,
            )  # fmt: skip

        status = status_now()
        while "L417VS" not in status.stdout:  # the status file follows every 2 s
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.2)
            status = status_now()
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"alprd pid {d.proc.pid}: running: 2 cameras" in status.stdout
        assert "camera dead" in status.stdout and "reconnecting" in status.stdout
        assert "L417VS" in status.stdout  # the last events
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b'alprd_frames_total{camera="rear"}' in metrics
        assert b'alprd_events_total{camera="rear"} 1.0' in metrics
        assert b'alprd_stage_seconds_count{stage="vehicle"}' in metrics
    finally:
        code, events = d.stop()
    assert code == 0
    plates = [e["plate"] for e in events if e["event"] == "plate_event"]
    assert plates == ["L417VS"]
    lost = [e for e in events if e["event"] == "camera_lost"]
    assert len(lost) == 1 and lost[0]["camera"] == "dead"
    # Stored and written: the SQLite store (alprd reads) and the JSONL file.
    reads = subprocess.run(
        [sys.executable, "-m", "alprd", "reads", "--json", "--config", str(config)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    [stored] = [json.loads(line) for line in reads.stdout.splitlines()]
    assert (stored["plate"], stored["camera"]) == ("L417VS", "rear")
    assert stored["first_seen"].endswith("Z") and stored["reads"] >= 3, stored
    [line] = (site / "state" / "reads.jsonl").read_text().splitlines()
    assert json.loads(line)["id"] == stored["id"]
    after = subprocess.run(
        [sys.executable, "-m", "alprd", "status", "--config", str(config)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert after.returncode == 3 and "not running" in after.stdout
    plate_jpg, vehicle_jpg = stored["snapshots"]
    assert plate_jpg.endswith(f"{stored['id']}-plate.jpg") and Path(plate_jpg).is_file()
    assert cv2.imread(vehicle_jpg).shape[0] > cv2.imread(plate_jpg).shape[0]


def test_what_a_reload_or_swap_replaced_is_collected_even_in_a_cycle():
    """The loop's heap is frozen after start-up (full collections then skip what was
    loaded); what a reload or swap replaces is garbage only later, and may sit in a
    reference cycle (an engine and its callbacks): settling the heap again thaws
    first, so it is collected rather than kept for the life of the daemon."""

    class Engine:  # stands for any object graph a swap lets go
        pass

    try:
        old = Engine()
        old.me = old  # type: ignore[attr-defined]  # a cycle: only the collector frees it
        gone = weakref.ref(old)
        heap.settle()  # start-up: frozen with everything else
        del old
        heap.settle()  # after the swap
        assert gone() is None
    finally:
        gc.unfreeze()


#: What a swap leaves: blocks freed between blocks still in use (nothing at the
#: heap's top to trim); prints the MB RSS falls by when the heap is settled.
SWAPPED = """
import gc
from alprd import heap
blocks = [bytes(100_000) for _ in range(2_000)]  # 200 MB below the mmap threshold
kept = blocks[1::2]  # every other block stays
del blocks
gc.collect()
before = rss()
print(before - rss() if heap.release_free() else "no malloc_trim")
"""

#: Decoded frames freed between smaller blocks still in use; argv[1]: the
#: threshold; prints the MB still held after they are freed.
FRAMES = """
import gc, sys
from alprd import heap
heap.configure(int(sys.argv[1]))
frame = 1280 * 720 * 3
bytearray(frame)  # a frame freed: glibc's own threshold rises past a frame's size
base = rss()
frames, kept = [], []
for _ in range(40):  # frames decoded, each followed by a small block still in use
    frames.append(bytearray(frame))
    kept.append(bytearray(1000))
del frames
gc.collect()
print(rss() - base)
"""

RSS = """
from pathlib import Path
def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
"""


def _run_heap(script: str, *args: str) -> str:
    """`script` in a fresh interpreter (a heap with no history of its own)."""
    return subprocess.run(
        [sys.executable, "-c", RSS + script, *args],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2],
    ).stdout.strip()  # fmt: skip


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
def test_memory_a_swap_freed_in_the_middle_of_the_heap_goes_back_to_the_system():
    """What a swap frees sits between blocks still in use, where the C heap keeps it
    for reuse (RSS does not fall at all without a trim): settling the heap gives
    pages of it back (33-92 MB of the 100 MB freed, with the heap's layout), so a
    daemon that swapped engines is not larger for it."""
    released = _run_heap(SWAPPED)
    if released == "no malloc_trim":
        pytest.skip("the C library has no malloc_trim (not glibc)")
    assert float(released) > 25, f"RSS fell {float(released):.0f} MB of the ~100 MB freed"


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
def test_memory_freed_frames_go_back_to_the_system_at_once():
    """Decoded frames freed between smaller blocks still in use: with glibc's own
    threshold (`service.heap_mmap_threshold_kb = 0`) they stay in the heap (40
    frames of 720p: ~100 MB held); with 1024 (what "auto", the default, gives on
    CPU engines) they go back when freed."""
    glibc, ours = float(_run_heap(FRAMES, "0")), float(_run_heap(FRAMES, "1024"))
    if glibc < 50:
        pytest.skip(f"this C library does not keep freed frames ({glibc:.0f} MB held)")
    assert ours < 10, f"{ours:.0f} MB of freed frames still held (glibc's own: {glibc:.0f})"


def test_memory_the_heap_threshold_by_default_gives_frames_pages_of_their_own_on_cpu():
    """ "auto" (the default) resolves to `heap.HOST_THRESHOLD_KB` for the default
    (host) engines; a number configured is taken as it is. (The GPU side, 0, needs
    a GPU.)"""
    from alprd.pipeline.recognizer import Recognizer
    from alprd.service import heap_threshold_kb

    config = cfgmod.load(cfgmod.find_config().path)
    assert config.service.heap_mmap_threshold_kb == "auto"
    recognizer = Recognizer.load(config)
    try:
        assert not recognizer.on_gpu()
        assert heap_threshold_kb(config, recognizer) == heap.HOST_THRESHOLD_KB == 1024
        for kb in (0, 2048):
            config.service = settings.ServiceConfig(heap_mmap_threshold_kb=kb)
            assert heap_threshold_kb(config, recognizer) == kb
    finally:
        recognizer.close()
    with pytest.raises(ValueError):
        settings.ServiceConfig(heap_mmap_threshold_kb=-1)
    with pytest.raises(ValueError):
        settings.ServiceConfig(heap_mmap_threshold_kb="big")


def test_a_metrics_port_in_use_is_tried_again_and_logged_once(monkeypatch):
    import socket

    from structlog.testing import capture_logs

    from alprd import observe

    port = free_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", port))
    taken.listen()
    monkeypatch.setattr(observe, "METRICS_RETRY_S", 0.3)
    metrics = observe.Metrics()
    with capture_logs() as logs:
        assert metrics.serve(port) is False
        assert metrics.serve(port) is False  # still in use
        taken.close()
        assert metrics.serve(port) is False  # free now, but not tried before its time
        time.sleep(0.35)
        assert metrics.serve(port) is True
        assert metrics.serve(port) is True  # serving: nothing more to do
    events = [e["event"] for e in logs]
    assert events.count("metrics_unavailable") == 1 and events.count("metrics_serving") == 1
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "alprd_frames_total" in text or "process_resident_memory_bytes" in text
