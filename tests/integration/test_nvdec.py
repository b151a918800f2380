"""Cameras decoded on the GPU (NVDEC): the capture, the camera reader around it,
the fall-backs to OpenCV, and device frames through the pipeline. NVDEC itself
needs an NVIDIA GPU: here PyNvVideoCodec is a stand-in (`support.nvc`) whose
decoder is OpenCV and whose frames are CPU torch tensors; everything around it
(reader threads, fall-backs, frames that stay "on the device" until a host stage
asks) is alprd's real code. The real decoder is measured by `make bench-gpu` on
an NVIDIA H100 (BENCHMARKS.md)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, needs_data
from structlog.testing import capture_logs
from support.media import grey_clip
from support.nvc import StandIn, cudaVideoCodec

from alprd import ops
from alprd.pipeline import nvdec
from alprd.pipeline.source import CameraReader, LatestFrame, iter_file

torch = pytest.importorskip("torch")
REAR = SHARED_DATA / "videos" / "rear-nl-L417VS.mp4"


@pytest.fixture
def video(tmp_path):
    """A real 2 s, 10 fps video written by OpenCV, 20 frames of grey i * 10."""
    return grey_clip(tmp_path / "clip.avi", 20, size=(64, 48), step=10)


def run_camera(reader: CameraReader, timeout: float = 20.0) -> list:
    """Every frame the reader publishes until it ends."""
    frames = []
    reader.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = reader.slot.take(timeout=0.05)
        if frame is not None:
            frames.append(frame)
        elif not reader.is_alive():
            break
    reader.join(timeout=5)
    return frames


def test_the_capture_reads_every_frame_as_bgr_on_the_device(video):
    """Every frame, the ones the decoder held until the end included, in order,
    as device frames with OpenCV's pixels (the decoder's RGB turned to BGR)."""
    stand_in = StandIn(latency=3)
    cap = nvdec.NvdecCapture(str(video), "video", 5.0, nvc=stand_in)
    assert cap.fps == pytest.approx(10.0)
    kwargs = stand_in.decoders[0].kwargs
    assert kwargs["usedevicememory"] and kwargs["outputColorType"] == stand_in.OutputColorType.RGB
    got = []
    while (image := cap.read()) is not None:
        got.append(image)
    cap.release()
    expected = [f.image for f in iter_file(str(video), "x")]
    assert len(got) == len(expected) == 20
    for image, want in zip(got, expected, strict=True):
        assert isinstance(image, ops.DeviceImage) and image.shape == (48, 64, 3)
        assert np.array_equal(image.host(), want)


def test_a_camera_on_nvdec_publishes_device_frames(video):
    slot = LatestFrame()
    reader = CameraReader("yard", str(video), slot, fps=1000, every_frame=True,
                          opener=nvdec.nvdec_opener(nvc=StandIn()))  # fmt: skip
    with capture_logs() as logs:
        frames = run_camera(reader)
    assert reader.state == "ended" and reader.decoder == "nvdec"
    assert [f.index for f in frames] == list(range(20)) and slot.dropped == 0
    assert all(isinstance(f.image, ops.DeviceImage) for f in frames)
    assert [round(float(f.image.host().mean()) / 10) for f in frames] == list(range(20))
    connected = [e for e in logs if e["event"] == "camera_connected"]
    assert connected and connected[0]["decoder"] == "nvdec"


def test_a_looping_file_on_nvdec_keeps_its_decoder(video):
    """At the end of a looping file the camera starts it again on the same decoder
    (destroying one holds the interpreter lock, tens of ms on a GPU):
    every frame of every pass, in order, the frames the decoder held at the end
    of a pass included; one decoder for all the passes."""
    slot, stand_in = LatestFrame(), StandIn(latency=3)
    reader = CameraReader("yard", str(video), slot, fps=1000, every_frame=True, loop=True,
                          opener=nvdec.nvdec_opener(nvc=stand_in))  # fmt: skip
    frames = []
    reader.start()
    deadline = time.monotonic() + 20
    while len(frames) < 50 and time.monotonic() < deadline:
        if (frame := slot.take(timeout=0.05)) is not None:
            frames.append(frame)
    reader.stop()
    reader.join(timeout=5)
    assert len(frames) == 50 and reader.loops >= 2 and reader.reconnects == 0
    assert [round(float(f.image.host().mean()) / 10) for f in frames] == [i % 20 for i in range(50)]
    assert len(stand_in.decoders) == 1


def test_a_codec_nvdec_cannot_decode_falls_back_to_opencv_once(video):
    """An MJPEG stream (a codec NVDEC does not take): one warning, then the same
    camera decoded by OpenCV, no frame lost, no reconnect counted."""
    slot, mjpeg = LatestFrame(), StandIn(codec=cudaVideoCodec.JPEG)
    reader = CameraReader("yard", str(video), slot, fps=1000, every_frame=True,
                          opener=nvdec.nvdec_opener(nvc=mjpeg))  # fmt: skip
    with capture_logs() as logs:
        frames = run_camera(reader)
    assert reader.state == "ended" and reader.decoder == "cpu" and reader.reconnects == 0
    assert len(frames) == 20 and all(isinstance(f.image, np.ndarray) for f in frames)
    fallback = [e for e in logs if e["event"] == "camera_decoder_fallback"]
    assert len(fallback) == 1 and "codec" in fallback[0]["reason"] and fallback[0]["now"] == "cpu"


def test_an_unreachable_source_reconnects_on_nvdec(tmp_path):
    """A source that cannot be opened is a lost camera (backoff, reconnects), not
    a reason to give NVDEC up."""
    slot = LatestFrame()
    reader = CameraReader("gone", str(tmp_path / "missing.mp4"), slot, fps=5, initial_s=0.05,
                          max_s=0.05, opener=nvdec.nvdec_opener(nvc=StandIn()))  # fmt: skip
    with capture_logs() as logs:
        reader.start()
        time.sleep(0.5)
        reader.stop()
        reader.join(timeout=5)
    assert reader.decoder == "nvdec" and reader.attempts >= 2 and reader.state == "stopped"
    lost = [e for e in logs if e["event"] == "camera_lost"]
    assert len(lost) == 1 and "cannot open" in lost[0]["reason"]


def test_which_decoder_a_camera_gets(monkeypatch):
    """cpu: OpenCV. auto: NVDEC only where the engines work on a GPU. nvdec (or
    auto on a GPU) without the library: OpenCV, one warning for all cameras.
    Image folders and V4L2 devices: OpenCV."""
    monkeypatch.setattr(nvdec, "_warned", False)

    def missing():
        raise RuntimeError("No module named 'PyNvVideoCodec'")

    monkeypatch.setattr(nvdec, "library", missing)
    with capture_logs() as logs:
        assert nvdec.opener_for("cpu", "stream", True, "a") is None
        assert nvdec.opener_for("auto", "stream", False, "a") is None
        assert logs == []
        assert nvdec.opener_for("nvdec", "stream", False, "a") is None
        assert nvdec.opener_for("auto", "stream", True, "b") is None
        assert nvdec.opener_for("nvdec", "v4l2", True, "c") is None
    unavailable = [e for e in logs if e["event"] == "nvdec_unavailable"]
    assert len(unavailable) == 1 and "PyNvVideoCodec" in unavailable[0]["reason"]
    assert "decoder" in unavailable[0]["hint"]
    fallback = [e for e in logs if e["event"] == "camera_decoder_fallback"]
    assert [e["camera"] for e in fallback] == ["c"]
    monkeypatch.setattr(nvdec, "library", StandIn)
    opener = nvdec.opener_for("auto", "video", True, "d")
    assert opener is not None and opener.decoder == "nvdec"  # type: ignore[attr-defined]


def test_a_device_frame_gives_the_host_what_it_asks_for():
    """The whole frame, a region (snapshot files), a shrunk copy (motion gating):
    what the same operations give on the host frame."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    image = nvdec.TorchImage(torch.from_numpy(frame.copy()))
    assert image.shape == (96, 128, 3)
    assert np.array_equal(ops.host(image), frame) and ops.host(image) is ops.host(image)
    assert np.array_equal(ops.region(image, 10, 20, 50, 60), frame[20:60, 10:50])
    shrunk, want = ops.shrink(image, 32, 24), ops.shrink(frame, 32, 24)
    assert shrunk.shape == want.shape == (24, 32, 3)
    assert np.abs(shrunk.astype(int) - want.astype(int)).max() <= 1


@needs_data(REAR, "videos")
def test_device_frames_through_the_pipeline_give_the_same_event(tmp_path):
    """The rear-view video decoded by the NVDEC camera (frames staying device
    frames) through a camera's stages with the default engines (OpenVINO: the
    host stages download them once), motion gating and snapshots on: the one
    event of OpenCV's frames, with the snapshot region cut from the device frame."""
    from alprd import config as cfgmod
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.stream import CameraPipeline

    config = cfgmod.load(cfgmod.find_config().path)
    recognizer = Recognizer.load(config)
    slot = LatestFrame()
    reader = CameraReader("rear", str(REAR), slot, fps=1000, every_frame=True,
                          opener=nvdec.nvdec_opener(nvc=StandIn()))  # fmt: skip
    pipe = CameraPipeline("rear", recognizer, config, keep_snapshots=True)
    events, device = [], 0
    reader.start()
    while (frame := slot.take(timeout=5.0)) is not None:
        device += isinstance(frame.image, ops.DeviceImage)
        events += pipe.process(frame)
    reader.join(timeout=5)
    events += pipe.finish()
    recognizer.close()
    assert device == pipe.frames > 200 and pipe.gated > 0  # motion gating ran on them
    assert [e.plate for e in events] == ["L417VS"]
    snapshot = pipe.take_snapshot(events[0])
    assert snapshot is not None and isinstance(snapshot.image, np.ndarray)
    (x1, y1, x2, y2), _ = snapshot.boxes()
    h, w = snapshot.image.shape[:2]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and h * w < 0.5 * 720 * 1280  # a region
    assert cv2.imwrite(str(tmp_path / "plate.jpg"), snapshot.image)


def test_device_frames_shrunk_together_are_those_shrunk_one_by_one():
    """Motion thumbnails of a batch (`ops.shrink_many`): the frames of one shape
    resized together, a few at a time, and copied back at once; each the same as
    its own `shrunk`."""
    rng = np.random.default_rng(4)
    frames = [
        rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(nvdec.SHRINK_CHUNK + 3)
    ]
    images = [nvdec.TorchImage(torch.from_numpy(f.copy())) for f in frames]
    together = ops.shrink_many(images, [(32, 24)] * len(images))
    assert len(together) == len(images)
    for image, small in zip(images, together, strict=True):
        assert small.shape == (24, 32, 3) and small.flags.c_contiguous
        assert np.array_equal(small, image.shrunk(32, 24))
