"""Frame sources: files read in order (``alprd detect``), and live cameras read by
one thread each into a latest-frame slot.

A camera URL may be an RTSP/HTTP(S)/RTMP/UDP stream (OpenCV's FFmpeg), a V4L2
device (``/dev/video0`` or ``0``), a GStreamer pipeline (contains ``!``; needs an
OpenCV built with GStreamer), a video file (replayed at its own rate), an image
file or a folder of images. A camera's frames are decoded by OpenCV on the CPU, or
on an NVIDIA GPU (`alprd.pipeline.nvdec`, ``cameras[].decoder``): both are a
`Capture`, read by the same `CameraReader`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from alprd.log import get_logger, redact
from alprd.ops import AnyImage, Image
from alprd.pipeline.types import Frame

log = get_logger("alprd.source")

# FFmpeg and OpenCV print their own lines to stderr, in the middle of ours in the
# journal; what they would say is reported as camera_lost / input_failed instead.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

Kind = Literal["folder", "image", "video", "stream", "v4l2", "gstreamer"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
STREAM_SCHEMES = (
    "rtsp://",
    "rtsps://",
    "rtmp://",
    "http://",
    "https://",
    "udp://",
    "tcp://",
    "srt://",
)


class SourceError(Exception):
    """A source cannot be opened or read; the message names it and says why."""


class DecoderUnsupported(SourceError):
    """This decoder cannot decode the source (its codec, or its kind): the camera
    goes on with OpenCV's."""


def classify(url: str) -> Kind:
    lower = url.lower()
    if lower.startswith(STREAM_SCHEMES):
        return "stream"
    if "!" in url:
        return "gstreamer"
    if url.isdigit() or lower.startswith("/dev/video"):
        return "v4l2"
    path = Path(url)
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "video"


def open_capture(url: str, kind: Kind, timeout_s: float = 10.0) -> cv2.VideoCapture:
    """An opened cv2.VideoCapture, or SourceError saying why not."""
    ms = int(timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    if kind == "gstreamer":
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise SourceError(
                f"{redact(url)}: this OpenCV build has no GStreamer support; "
                "use an OpenCV built with GStreamer (e.g. Debian's python3-opencv)"
            )
        cap = cv2.VideoCapture(url, cv2.CAP_GSTREAMER)
    elif kind == "v4l2":
        cap = cv2.VideoCapture(int(url) if url.isdigit() else url, cv2.CAP_V4L2, params)
    else:
        if kind == "video" and not Path(url).is_file():
            raise SourceError(f"{url}: no such file")
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        what = (
            "cannot open the stream"
            if kind in ("stream", "v4l2", "gstreamer")
            else ("cannot decode it as a video (corrupt, or not a video)")
        )
        raise SourceError(f"{redact(url)}: {what}")
    return cap


class Capture(Protocol):
    """An opened video source, read one decoded frame at a time: `grab` decodes
    the next frame, `retrieve` hands it over (converted, copied out of the
    decoder). A camera read at fewer frames a second than it sends grabs every
    frame (the decoder needs them all) and retrieves only those it keeps."""

    #: the source's own frame rate (files are replayed at it); 0: unknown
    fps: float

    def grab(self) -> bool:
        """Decode the next frame; False at the end of a file or when a stream broke."""
        ...

    def retrieve(self) -> AnyImage | None:
        """The frame the last `grab` decoded (once), or None when it cannot be had."""
        ...

    def read(self) -> AnyImage | None:
        """The next frame (`grab`, then `retrieve`), or None at the end of a file or
        when a stream broke."""
        ...

    def restart(self) -> bool:
        """A file read again from its start (a looping camera) without opening it
        anew; False: not done (the camera opens it again)."""
        ...

    def release(self) -> None: ...


#: opens `url` (of `kind`) within `timeout_s`, or raises SourceError
Opener = Callable[[str, "Kind", float], Capture]


class OpenCVCapture:
    """OpenCV's FFmpeg/V4L2/GStreamer capture (`open_capture`), decoding on the
    CPU; once the frame shape is known, into the buffer `buffer(shape)` gives (the
    serving engine's page-locked buffers on a GPU), or, where it gives None, into
    arrays OpenCV allocates."""

    def __init__(
        self, url: str, kind: Kind, timeout_s: float,
        buffer: Callable[[tuple[int, ...]], Image | None] | None = None,
    ) -> None:  # fmt: skip
        self.cap = open_capture(url, kind, timeout_s)
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.buffer = buffer
        self._shape: tuple[int, ...] | None = None

    def grab(self) -> bool:
        return bool(self.cap.grab())

    def retrieve(self) -> Image | None:
        into = self.buffer(self._shape) if self.buffer and self._shape is not None else None
        ok, image = self.cap.retrieve(into) if into is not None else self.cap.retrieve()
        if not ok:
            return None
        self._shape = image.shape
        return image.astype(np.uint8, copy=False)

    def read(self) -> Image | None:
        return self.retrieve() if self.grab() else None

    def restart(self) -> bool:
        return False  # reopened: OpenCV's seek to the start is not exact for every file

    def release(self) -> None:
        self.cap.release()


def read_image(path: Path) -> Image:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"{path}: not a readable image (missing, corrupt or unsupported)")
    return image.astype(np.uint8, copy=False)


class Pace:
    """Which frames of a source to keep for at most `fps` a second. Frames are
    kept on a schedule of one every 1/fps seconds, each slot taking the frame
    nearest it (within half the source's own frame interval), so a 30 frames/s
    camera read at 25 gives 25 frames/s and a 25 frames/s one read at 5 gives 5;
    keeping a frame only when 1/fps has passed since the last one kept would give
    15 and 4.5 (a frame due exactly then comes a hair early half the time, and
    the next one is a whole frame late). A source slower than `fps` keeps every
    frame; after a stall the schedule starts again from the next frame (no burst
    of frames to catch up)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        #: the source's own frame interval, seconds (a running mean of the gaps)
        self.interval = 0.0
        self._due = -math.inf
        self._last: float | None = None

    def keep(self, t: float, interval: float | None = None) -> bool:
        """Whether the frame at time `t` (seconds, any origin) is kept. `interval`:
        the source's frame interval where it is known (a file's); else measured."""
        if interval is None:
            if self._last is not None:
                gap = min(t - self._last, self.period)  # a stall is not the source's rate
                self.interval = gap if not self.interval else 0.9 * self.interval + 0.1 * gap
            interval = self.interval
        self._last = t
        if t < self._due - min(interval, self.period) / 2:
            return False
        behind = t - self._due > self.period
        self._due = t + self.period if behind else self._due + self.period
        return True


def iter_file(url: str, camera: str, fps: float | None = None) -> Iterator[Frame]:
    """Every frame of a file source in order (no drops), times from the file.
    `fps` keeps at most that many frames per second of video."""
    kind = classify(url)
    if kind == "image":
        yield Frame(camera, 0, 0.0, read_image(Path(url)))
        return
    if kind == "folder":
        paths = sorted(p for p in Path(url).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for i, p in enumerate(paths):
            yield Frame(camera, i, float(i), read_image(p))
        return
    cap = open_capture(url, kind)
    try:
        native = cap.get(cv2.CAP_PROP_FPS) or 25.0
        pace = Pace(fps) if fps else None
        index, got = 0, 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            t = index / native
            if pace is None or pace.keep(t, 1.0 / native):
                yield Frame(camera, index, t, image.astype(np.uint8, copy=False))
                got += 1
            index += 1
        if got == 0:
            raise SourceError(f"{url}: no frame could be decoded (corrupt, or not a video)")
    finally:
        cap.release()


class LatestFrame:
    """A one-frame slot: the reader overwrites, the pipeline takes. A frame
    overwritten before it was taken is counted as dropped; nothing queues."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self.dropped = 0
        self.published = 0
        self.last_put: float | None = None  # time.monotonic() of the newest frame

    @property
    def full(self) -> bool:
        """A frame waits to be taken (a hint: read without the lock)."""
        return self._frame is not None

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self.published += 1
            self.last_put = time.monotonic()
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> Frame | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self._cond.notify_all()
            return frame

    def wait_empty(self, timeout: float) -> bool:
        """Whether the slot's frame was taken (waits up to `timeout` for it)."""
        with self._cond:
            if self._frame is not None:
                self._cond.wait(timeout)
            return self._frame is None


State = Literal["connecting", "streaming", "reconnecting", "ended", "stopped"]


class CameraReader(threading.Thread):
    """Reads one camera into a LatestFrame, at most `fps` frames per second.
    Reconnects with exponential backoff (initial_s, doubling, capped at max_s);
    logs each change of state once, not each attempt.

    `opener` opens the video sources (None: OpenCV's, decoding into `allocate`'s
    buffers); one that cannot decode this source (`DecoderUnsupported`) is given
    up with one warning and OpenCV's takes over. `every_frame` (benchmarks):
    files are not paced to their own rate and no frame is dropped, each waits
    until the one before was taken."""

    def __init__(
        self,
        name: str,
        url: str,
        slot: LatestFrame,
        *,
        fps: float,
        initial_s: float = 1.0,
        max_s: float = 30.0,
        open_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        allocate: Callable[[tuple[int, ...]], Image] | None = None,
        loop: bool = False,
        opener: Opener | None = None,
        every_frame: bool = False,
    ) -> None:
        super().__init__(name=f"camera-{name}", daemon=True)
        #: a video file or image folder starts again at its end (demos, soak runs)
        self.loop = loop
        self.loops = 0
        #: where frames are decoded into once their shape is known (the serving
        #: engine's page-locked buffers on a GPU); None: OpenCV allocates
        self.allocate = allocate
        self.opener = opener
        #: "cpu" (OpenCV) or "nvdec" (the GPU), what decodes this camera now
        self.decoder = "cpu" if opener is None else getattr(opener, "decoder", "other")
        self.every_frame = every_frame
        self.camera, self.url, self.slot, self.fps = name, url, slot, fps
        self.kind = classify(url)
        self.initial_s, self.max_s, self.open_timeout_s = initial_s, max_s, open_timeout_s
        self.clock = clock
        self.state: State = "connecting"
        self.attempts = 0  # failed opens/reads since the last frame
        self.reconnects = 0
        self.frames = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def _set_state(self, state: State, **fields: object) -> None:
        if state == self.state:
            return
        self.state = state
        url = redact(self.url)
        if state == "streaming":
            log.info("camera_connected", camera=self.camera, url=url, decoder=self.decoder,
                     **fields)  # fmt: skip
        elif state == "reconnecting":
            self.reconnects += 1
            log.warning("camera_lost", camera=self.camera, url=url, **fields)
        elif state == "ended":
            log.info("camera_ended", camera=self.camera, url=url, **fields)

    def backoff(self) -> float:
        return float(min(self.max_s, self.initial_s * 2 ** max(0, self.attempts - 1)))

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                try:
                    if self.kind in ("image", "folder"):
                        self._run_images()
                    else:
                        self._run_capture()
                except DecoderUnsupported as exc:
                    log.warning(
                        "camera_decoder_fallback", camera=self.camera, url=redact(self.url),
                        decoder=self.decoder, reason=str(exc), now="cpu",
                    )  # fmt: skip
                    self.opener, self.decoder = None, "cpu"
                    continue
                except SourceError as exc:
                    self.attempts += 1
                    delay = self.backoff()
                    self._set_state("reconnecting", reason=str(exc), retry_in_s=delay)
                    self._halt.wait(delay)
                    continue
                if self.state == "ended":
                    return
        finally:
            if self.state != "ended":
                self.state = "stopped"

    def _run_images(self) -> None:
        n = 0
        for frame in iter_file(self.url, self.camera):
            if self._halt.is_set():
                return
            self._set_state("streaming")
            self._publish(frame.image)
            n += 1
            if not self.every_frame:
                self._halt.wait(1.0 / self.fps)
        self._end(n)

    def _end(self, frames_this_pass: int) -> None:
        """The file's end: again from its start (`loop`), or the camera ends."""
        if not self.loop:
            self._set_state("ended", frames=self.frames)
        elif frames_this_pass == 0:
            raise SourceError(f"{redact(self.url)}: no frame to loop over")
        else:
            self.loops += 1

    def _open(self) -> Capture:
        if self.opener is not None:
            return self.opener(self.url, self.kind, self.open_timeout_s)
        return OpenCVCapture(self.url, self.kind, self.open_timeout_s, self._buffer)

    def _run_capture(self) -> None:
        cap = self._open()
        try:
            native = cap.fps or 25.0
            paced = self.kind == "video" and not self.every_frame  # a file at its own rate
            started, n, pace = time.monotonic(), 0, Pace(self.fps)
            while not self._halt.is_set():
                if not cap.grab():
                    if self.kind == "video":
                        self._end(n)
                        if self.state == "ended" or not cap.restart():
                            return
                        started, n = time.monotonic(), 0  # a loop on the same decoder
                        continue
                    raise SourceError(f"{redact(self.url)}: read failed (stream interrupted)")
                self.attempts = 0
                self._set_state("streaming")
                if paced:
                    self._halt.wait(max(0.0, started + n / native - time.monotonic()))
                n += 1
                if not (self.every_frame or pace.keep(time.monotonic())):
                    continue  # decoded (the next frames need it), not converted or copied
                image = cap.retrieve()
                if image is None:
                    raise SourceError(f"{redact(self.url)}: read failed (frame not retrieved)")
                self._publish(image)
        finally:
            cap.release()

    def _buffer(self, shape: tuple[int, ...]) -> Image | None:
        """A buffer to decode the next frame into, or None (OpenCV allocates). An
        allocator that fails (page-locked memory exhausted) is dropped with one
        warning: the camera goes on with plain arrays."""
        if self.allocate is None:
            return None
        try:
            return self.allocate(shape)
        except Exception as exc:
            log.warning(
                "camera_frame_buffers_off", camera=self.camera, reason=str(exc),
                hint="frames are decoded into plain memory (one more copy per frame)",
            )  # fmt: skip
            self.allocate = None
            return None

    def _publish(self, image: AnyImage) -> None:
        if self.every_frame:
            while not self.slot.wait_empty(0.1):
                if self._halt.is_set():
                    return
        self.slot.put(Frame(self.camera, self.frames, self.clock(), image))
        self.frames += 1
