"""The cameras the daemon serves: for each, a reader thread (`pipeline/source`)
filling its newest-frame slot, and its stages (`pipeline/stream.CameraPipeline`:
tracking, voting). Opened at start, changed at a reload (removed or changed
cameras closed with their open passes decided, kept ones given new stages, new
ones opened), closed at stop; observed for the status file, the metrics and the
health line. Also the frames kept to validate rebuilt engines on (`Samples`).

Events go out through the `emit` the owner gives: the cameras never touch an
output."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import cv2

from alprd import config as cfgmod
from alprd import ops
from alprd.log import get_logger, redact
from alprd.observe import CameraStatus, Metrics
from alprd.pipeline import nvdec
from alprd.pipeline.recognizer import Recognizer
from alprd.pipeline.source import CameraReader, LatestFrame, classify
from alprd.pipeline.stream import CameraPipeline
from alprd.pipeline.types import Frame, PlateEvent

log = get_logger("alprd.service")

SAMPLES_KEPT = 8  # recent camera frames kept to validate new engines on
SAMPLE_EVERY_S = 20.0


@dataclass
class Camera:
    config: cfgmod.CameraConfig
    slot: LatestFrame
    reader: CameraReader
    pipeline: CameraPipeline
    processed: int = 0
    events: int = 0
    window_frames: int = 0  # frames processed since the last health line

    @property
    def name(self) -> str:
        return self.config.name


def pipeline_for(
    cam: cfgmod.CameraConfig, config: cfgmod.Config, recognizer: Recognizer
) -> CameraPipeline:
    """A camera's stages, tracking and voting (at open, and at each reload)."""
    return CameraPipeline(
        cam.name, recognizer, config, zone=cam.zone, regions=cam.regions,
        keep_snapshots=config.outputs.snapshots.enabled, motion=cam.motion,
        arriving=cam.arriving, gate=cam.role == "gate",
    )  # fmt: skip


class Cameras:
    """The open cameras by name. `emit(camera, event)` takes every event a camera
    decides outside the main loop's batches (a pass closed at a reload, a stop, or
    when its camera went quiet)."""

    def __init__(self, metrics: Metrics, emit: Callable[[Camera, PlateEvent], None]) -> None:
        self._open: dict[str, Camera] = {}
        self._metrics = metrics
        self._emit = emit
        self._health_at = time.monotonic()  # the health line's window began

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Camera]:
        return iter(list(self._open.values()))

    def __getitem__(self, name: str) -> Camera:
        return self._open[name]

    def names(self) -> list[str]:
        return list(self._open)

    def open(self, cam: cfgmod.CameraConfig, config: cfgmod.Config, recognizer: Recognizer) -> None:
        s = config.sources
        slot = LatestFrame()
        opener = nvdec.opener_for(cam.decoder, classify(cam.url), recognizer.on_gpu(), cam.name)
        reader = CameraReader(
            cam.name, cam.url, slot, fps=cam.fps, initial_s=s.reconnect_initial_s,
            max_s=s.reconnect_max_s, open_timeout_s=s.open_timeout_s,
            allocate=recognizer.frame_allocator(), loop=cam.loop, opener=opener,
        )  # fmt: skip
        self._open[cam.name] = Camera(cam, slot, reader, pipeline_for(cam, config, recognizer))
        reader.start()
        log.info("camera_opened", camera=cam.name, url=redact(cam.url), fps=cam.fps,
                 decoder=reader.decoder)  # fmt: skip

    def close(self, name: str, timeout: float = 5.0) -> None:
        """Stop its reader, decide its open passes (emitted), forget its metrics."""
        cam = self._open.pop(name)
        cam.reader.stop()
        cam.reader.join(timeout=timeout)
        for event in cam.pipeline.finish():
            self._emit(cam, event)
        self._metrics.forget_camera(name)
        log.info("camera_closed", camera=name, frames=cam.processed, events=cam.events)

    def close_all(self, deadline: float) -> None:
        """Every camera closed by `deadline` (monotonic): all readers told to stop
        first, so that they wind down together."""
        for cam in self:
            cam.reader.stop()
        for name in self.names():
            self.close(name, timeout=max(0.1, deadline - time.monotonic()))

    def apply(self, config: cfgmod.Config, recognizer: Recognizer) -> None:
        """Serve the cameras of `config`: removed or changed ones closed (their open
        passes decided), kept ones given new stages (their readers untouched; open
        passes decided first), new ones opened."""
        wanted = {c.name: c for c in config.cameras if c.enabled}
        for name in self.names():
            if wanted.get(name) != self._open[name].config:
                self.close(name)
        for cam in self:
            for event in cam.pipeline.finish():
                self._emit(cam, event)
            cam.pipeline = pipeline_for(cam.config, config, recognizer)
        for name, cam_config in wanted.items():
            if name not in self._open:
                self.open(cam_config, config, recognizer)

    def waiting(self) -> tuple[int, int]:
        """How many cameras have a frame waiting, and how many deliver frames (their
        readers streaming): what `lanes.BatchWindow` decides by."""
        cams = list(self._open.values())
        return (
            sum(1 for cam in cams if cam.slot.full),
            sum(1 for cam in cams if cam.reader.state == "streaming"),
        )

    def ready(self) -> list[tuple[Camera, Frame]]:
        """The newest frame of every camera that has one (taken: not seen again)."""
        return [(cam, frame) for cam in self if (frame := cam.slot.take(timeout=0)) is not None]

    def tick(self, max_age_s: float) -> None:
        """End the passes of cameras whose frames stopped coming (no frame in
        `max_age_s`): frames that still come end them in the loop."""
        now = time.monotonic()
        for cam in self:
            sent = cam.slot.last_put
            if sent is not None and now - sent <= max_age_s:
                continue
            for event in cam.pipeline.tick(time.time()):
                self._emit(cam, event)

    def health(self, now: float | None = None) -> dict[str, str | int]:
        """The health line's camera fields since the last call (each camera's frame
        rate over the time that really passed); the window then starts again."""
        now = time.monotonic() if now is None else now
        elapsed = max(1e-3, now - self._health_at)
        self._health_at = now
        fields: dict[str, str | int] = {
            "cameras": ",".join(
                f"{cam.name}:{cam.window_frames / elapsed:.1f}fps/{cam.reader.state}"
                for cam in self
            )
            or "none",
            "drops": sum(c.slot.dropped for c in self),
            "reads": sum(c.pipeline.reads for c in self),
            "events": sum(c.events for c in self),
        }
        for cam in self:
            cam.window_frames = 0
        return fields

    def observe(self) -> dict[str, CameraStatus]:
        """Each camera's gauges set, and its line of the status file."""
        m = self._metrics
        out = {}
        for cam in self:
            name = cam.name
            m.dropped.labels(name).set(cam.slot.dropped)
            m.reads.labels(name).set(cam.pipeline.reads)
            m.camera_up.labels(name).set(1 if cam.reader.state == "streaming" else 0)
            voter = cam.pipeline.voter
            m.passes.labels(name).set(len(voter.open_passes))
            m.reads_held.labels(name).set(voter.reads_held)
            out[name] = CameraStatus(
                state=cam.reader.state,
                processed=cam.processed,
                dropped=cam.slot.dropped,
                reads=cam.pipeline.reads,
                still=cam.pipeline.gated,
                events=cam.events,
                reconnects=cam.reader.reconnects,
                decoder=cam.reader.decoder,
            )
        return out


class Samples:
    """Every SAMPLE_EVERY_S, a camera frame kept (JPEG, the last SAMPLES_KEPT,
    file names reused) to validate rebuilt engines on what the cameras see."""

    def __init__(self) -> None:
        self._paths: deque[Path] = deque(maxlen=SAMPLES_KEPT)
        self._names = count()
        self._next = 0.0

    @property
    def paths(self) -> tuple[Path, ...]:
        """The kept frames, the oldest first."""
        return tuple(self._paths)

    def offer(self, folder: Path, camera: str, image: ops.AnyImage) -> None:
        """Keep `image` in `folder` if one is due."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + SAMPLE_EVERY_S
        path = folder / f"{camera}-{next(self._names) % SAMPLES_KEPT}.jpg"
        part = path.with_name(path.name + ".part")
        try:
            ok, jpeg = cv2.imencode(".jpg", ops.host(image))
            if not ok:
                return
            folder.mkdir(parents=True, exist_ok=True)
            part.write_bytes(jpeg.tobytes())
            os.replace(part, path)  # whole or not at all: a full disk leaves the old one
        except OSError as exc:
            part.unlink(missing_ok=True)
            log.warning("sample_not_kept", reason=str(exc))
            return
        if path in self._paths:
            self._paths.remove(path)
        self._paths.append(path)  # the newest last; the oldest fall off
