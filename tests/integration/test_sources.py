"""Frame sources: real files, real OpenCV captures, real threads."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from conftest import SHARED_DATA, needs_data
from structlog.testing import capture_logs
from support.media import grey_clip

from alprd.pipeline.source import (
    CameraReader,
    LatestFrame,
    OpenCVCapture,
    SourceError,
    classify,
    iter_file,
)
from alprd.pipeline.types import Frame

VIDEOS = SHARED_DATA / "videos"


@pytest.fixture
def video(tmp_path):
    """A real 2 s, 10 fps MJPEG video written by OpenCV."""
    return grey_clip(tmp_path / "clip.avi", 20, size=(64, 48), step=10)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("rtsp://user:pw@10.0.0.2/stream", "stream"),
        ("https://cam/mjpeg", "stream"),
        ("/dev/video0", "v4l2"),
        ("0", "v4l2"),
        ("v4l2src ! videoconvert ! appsink", "gstreamer"),
        ("/tmp/x.mp4", "video"),
        ("/tmp/x.JPG", "image"),
    ],
)
def test_classify(url, kind):
    assert classify(url) == kind


def test_a_folder_is_a_source(tmp_path):
    assert classify(str(tmp_path)) == "folder"


def test_video_frames_in_order_with_an_fps_limit(video):
    frames = list(iter_file(str(video), "cam"))
    assert [f.index for f in frames] == list(range(20))
    assert frames[10].time == pytest.approx(1.0)
    sampled = list(iter_file(str(video), "cam", fps=2))
    assert [f.index for f in sampled] == [0, 5, 10, 15]


@needs_data(VIDEOS / "dashcam-in-KA22P3368.mp4")
def test_a_30_fps_video_read_at_25_keeps_25_a_second():
    # 138 frames at 29.97 frames/s (4.6 s): 25 a second is 115, not every other frame (69)
    video = VIDEOS / "dashcam-in-KA22P3368.mp4"
    kept = list(iter_file(str(video), "cam", fps=25))
    assert len(kept) == pytest.approx(138 * 25 / 29.97, abs=1)
    gaps = [b.time - a.time for a, b in itertools.pairwise(kept)]
    assert max(gaps) < 0.07  # never two frames skipped in a row


def test_a_camera_read_slower_than_it_sends_retrieves_only_the_frames_it_keeps(video):
    """Every frame is decoded (`grab`: the decoder needs them all), only the kept
    ones converted and handed over (`retrieve`): the real OpenCV capture, counted."""
    counts = {"grab": 0, "retrieve": 0}

    class Counted(OpenCVCapture):
        def grab(self) -> bool:
            counts["grab"] += 1
            return super().grab()

        def retrieve(self):  # type: ignore[no-untyped-def]
            counts["retrieve"] += 1
            return super().retrieve()

    slot = LatestFrame()
    reader = CameraReader("cam", str(video), slot, fps=5, opener=Counted)
    frames = []
    reader.start()
    deadline = time.monotonic() + 20
    while reader.is_alive() and time.monotonic() < deadline:  # the file plays for 2 s
        if (frame := slot.take(timeout=0.05)) is not None:
            frames.append(frame)
    reader.join(timeout=5)
    assert reader.state == "ended" and counts["grab"] == 21  # 20 frames, then the end
    assert 9 <= counts["retrieve"] <= 11 and counts["retrieve"] == reader.frames  # 5 of 10 a second
    assert all(int(f.image.mean()) == f.image[0, 0, 0] for f in frames)  # whole grey frames


def test_a_corrupt_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    with pytest.raises(SourceError, match=r"broken\.mp4: (cannot decode|no frame)"):
        list(iter_file(str(bad), "cam"))


def test_an_unreadable_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match=r"photo\.jpg: not a readable image"):
        list(iter_file(str(bad), "cam"))


def test_latest_frame_drops_old_frames_and_counts_them():
    slot = LatestFrame()
    img = np.zeros((1, 1, 3), np.uint8)
    for i in range(5):
        slot.put(Frame("c", i, float(i), img))
    got = slot.take(timeout=0)
    assert got is not None and got.index == 4
    assert (slot.published, slot.dropped) == (5, 4)
    assert slot.take(timeout=0.01) is None


# faults: Scenario 5: backoff, other cameras unaffected
@pytest.mark.faults
def test_an_unreachable_stream_reconnects_with_backoff_and_others_keep_running(video):
    """A stream on a closed port: the reader retries with growing delays, logs the
    loss once, and a second camera (a video file) keeps delivering frames."""
    dead_slot, live_slot = LatestFrame(), LatestFrame()
    with capture_logs() as logs:
        dead = CameraReader(
            "gate", "rtsp://user:secret@127.0.0.1:9/stream", dead_slot,
            fps=5, initial_s=0.05, max_s=0.2, open_timeout_s=1,
        )  # fmt: skip
        live = CameraReader("yard", str(video), live_slot, fps=100)
        dead.start()
        live.start()
        got = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (dead.attempts < 4 or len(got) < 5):
            frame = live_slot.take(timeout=0.2)
            if frame is not None:
                got.append(frame)
        dead.stop()
        live.stop()
        dead.join(timeout=5)
        live.join(timeout=5)
    assert dead.attempts >= 4 and dead.state in ("reconnecting", "stopped")
    assert dead.backoff() == 0.2  # doubled up to the cap
    assert len(got) >= 5 and got[0].camera == "yard"
    lost = [e for e in logs if e["event"] == "camera_lost"]
    assert len(lost) == 1  # once per change of state, not per attempt
    assert "secret" not in str(lost[0]) and lost[0]["log_level"] == "warning"
    assert not dead.is_alive() and not live.is_alive()


def test_a_file_camera_ends(video):
    slot = LatestFrame()
    with capture_logs() as logs:
        reader = CameraReader("yard", str(video), slot, fps=100)
        reader.start()
        reader.join(timeout=10)
    assert reader.state == "ended" and reader.frames == 20
    assert [e["event"] for e in logs] == ["camera_connected", "camera_ended"]


def test_a_looping_file_camera_starts_again_at_its_end(video, tmp_path):
    slot = LatestFrame()
    with capture_logs() as logs:
        reader = CameraReader("yard", str(video), slot, fps=100, loop=True)
        reader.start()
        deadline = time.monotonic() + 20
        while reader.loops < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        reader.stop()
        reader.join(timeout=10)
    assert reader.loops >= 2 and reader.frames >= 40  # 20 frames a pass, again and again
    assert reader.state == "stopped"
    assert [e["event"] for e in logs] == ["camera_connected"]  # no end, no reconnect
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.jpg").write_bytes(b"")
    looping = CameraReader("yard", str(empty), LatestFrame(), fps=100, loop=True, initial_s=0.1)
    with capture_logs() as logs:
        looping.start()
        time.sleep(0.5)
        looping.stop()
        looping.join(timeout=10)
    assert looping.state == "stopped"
    assert "camera_lost" in [e["event"] for e in logs]  # a file with nothing to loop over


def test_a_camera_decodes_into_the_buffers_it_is_given(video):
    """With an allocator (the torch backend's page-locked buffers on a GPU; plain
    arrays here: pinning needs CUDA), every frame after the first is decoded in
    place into a fresh buffer of the frame's shape, with the right pixels."""
    given: list[np.ndarray] = []

    def allocate(shape):
        given.append(np.empty(shape, np.uint8))
        return given[-1]

    slot = LatestFrame()
    reader = CameraReader("yard", str(video), slot, fps=1000, allocate=allocate)
    frames = []
    reader.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frame = slot.take(timeout=0.05)
        if frame is not None:
            frames.append(frame)
        elif not reader.is_alive():
            break
    reader.join(timeout=5)
    assert reader.state == "ended" and len(given) >= 19  # first frame: OpenCV's own array
    assert all(g.shape == (48, 64, 3) for g in given)
    later = [f for f in frames if f.index > 0]
    assert later and all(any(f.image is g for g in given) for f in later)
    for f in later:  # the video's frame i is grey i * 10 (MJPEG: nearly)
        assert abs(float(f.image.mean()) - f.index * 10) < 3


def test_a_failing_frame_allocator_is_dropped_and_the_camera_goes_on(video):
    """Page-locked memory can run out: the camera then decodes into plain arrays,
    says so once, and loses no frame."""

    def exhausted(shape):
        raise RuntimeError("cudaHostAlloc: out of memory")

    slot = LatestFrame()
    with capture_logs() as logs:
        reader = CameraReader("yard", str(video), slot, fps=1000, allocate=exhausted)
        reader.start()
        reader.join(timeout=10)
    assert reader.state == "ended" and reader.frames == 20 and reader.allocate is None
    warnings = [e for e in logs if e["event"] == "camera_frame_buffers_off"]
    assert len(warnings) == 1 and "out of memory" in warnings[0]["reason"]
