"""The daemon (`alprd run`): start-up phase, main loop, reload, stop.

Start order: config -> engines (built if stale, reported to systemd) -> cameras ->
READY. Stop order is the reverse: cameras -> decide open passes -> engines.
Signal handlers only record the signal; the main loop acts on it. WATCHDOG=1 is
sent by the main loop itself, so a hung inference or a stuck loop stops the pings
and systemd restarts the service; a dead camera does not (its reader thread
reconnects on its own).
"""

from __future__ import annotations

import gc
import glob
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from types import FrameType
from typing import Any

import cv2

from alprd import config as cfgmod
from alprd import watch
from alprd.engines import cache, manager, served
from alprd.engines.base import EngineError, ModelRejected, Role
from alprd.engines.served import ServedModels
from alprd.engines.serving import Build, LoadedEngine, default_build, load_engine, roles_of
from alprd.exitcodes import ExitCode
from alprd.log import get_logger, redact
from alprd.observe import CameraStatus, EngineStatus, Metrics, Status, StatusWriter
from alprd.ops import Image
from alprd.pipeline.lanes import Lanes
from alprd.pipeline.recognizer import Recognizer
from alprd.pipeline.source import CameraReader, LatestFrame
from alprd.pipeline.stream import Batch, CameraPipeline
from alprd.pipeline.types import PlateEvent
from alprd.rebuild import Built, Rebuilder
from alprd.sinks.base import SinkError
from alprd.sinks.outputs import Outputs
from alprd.systemd import Notifier
from alprd.watch import ModelWatcher

log = get_logger("alprd.service")

#: Settings whose change needs an engine rebuilt or reloaded, per role.
_ENGINE_KEYS = ("source", "input_size", "input_height", "backend", "precision", "batch_size")


def _with_section(config: cfgmod.Config, role: Role, section: cfgmod.RoleModel) -> cfgmod.Config:
    """`config` with `role`'s model settings replaced by `section`."""
    models = config.models.model_copy(update={role: section})
    return config.model_copy(update={"models": models})


def _settle_heap() -> None:
    """Everything loaded so far (engines, Ultralytics, torch: hundreds of thousands
    of objects) out of the garbage collector's sight: its full collections then
    walk only what the loop allocates. Measured on the GPU bench: the OCR stage's
    p99 went from ~110 ms (a full collection in the middle of a batch) to ~5 ms.
    Called again after a reload or a swap: what was frozen is thawed first, or what
    those replaced (an engine, a pipeline, a config in a reference cycle) would
    never be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass
class Camera:
    config: cfgmod.CameraConfig
    slot: LatestFrame
    reader: CameraReader
    pipeline: CameraPipeline
    processed: int = 0
    events: int = 0
    window_frames: int = 0  # frames processed since the last health line


STATUS_EVERY_S = 2.0  # status file and metrics gauges
SAMPLES_KEPT = 8  # recent camera frames kept to validate new engines on
SAMPLE_EVERY_S = 20.0
METRICS_RETRY_S = 30.0  # a metrics port in use is tried again this often


@dataclass
class Service:
    config_path: Path
    notifier: Notifier = field(default_factory=Notifier)
    on_event: Callable[[PlateEvent], None] | None = None
    #: Called after each processed frame with (camera, frame index): benchmarks, tests.
    on_frame: Callable[[str, int], None] | None = None

    def __post_init__(self) -> None:
        self._signals: deque[int] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._stop_requested = False  # set by SIGTERM/SIGINT: cancels a build in progress
        self._swaps: deque[Built] = deque()
        self.cameras: dict[str, Camera] = {}
        self.watcher: ModelWatcher | None = None
        self.outputs: Outputs | None = None
        self._backlog_names: set[str] = set()
        self._stage_seen: dict[str, int] = {}
        self.metrics = Metrics()
        self.status_writer: StatusWriter | None = None
        self.started_at = time.time()
        self.rebuilder: Rebuilder | None = None
        self._samples: deque[Path] = deque(maxlen=SAMPLES_KEPT)
        self._sample_names = count()
        self._next_sample = 0.0
        self.recognizer: Recognizer | None = None
        self.config: cfgmod.Config | None = None  # what serves: the file + served models
        self.generation = 0
        self.served: ServedModels | None = None
        self.last_good: dict[Role, str] = {}  # role -> why its last good model serves
        self._health_at = time.monotonic()
        self._metrics_up = self._metrics_failed = False
        self._metrics_retry_at = 0.0

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only record it (no logging, no locks): the main loop decides.
        if signum == signal.SIGINT and self._stopping:
            os._exit(130)  # a second Ctrl-C forces the exit
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop_requested = True
        self._signals.append(signum)
        self._wake.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests, benchmarks): stop with request_stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def request_stop(self) -> None:
        self._stop_requested = True
        self._signals.append(signal.SIGTERM)
        self._wake.set()

    def request_reload(self) -> None:
        self._signals.append(signal.SIGHUP)
        self._wake.set()

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        self._install_signals()
        log.info("alprd_starting", pid=os.getpid(), config=str(self.config_path))
        self.notifier.status("loading config")
        try:
            config = cfgmod.load(self.config_path)
        except cfgmod.ConfigError as exc:
            for problem in exc.problems:
                log.error("config_invalid", problem=str(problem))
            return ExitCode.CONFIG
        self._warn_exposed(config)
        self.served = served.served_models(config)
        self.config = self._overlay(config)
        self.status_writer = StatusWriter(self.config.paths.state_dir)
        self._serve_metrics()
        try:
            self.outputs = Outputs.open(self.config)
        except (SinkError, OSError) as exc:
            log.error("outputs_failed", reason=str(exc))
            return ExitCode.FATAL
        self.rebuilder = Rebuilder(
            lambda: self.config,  # type: ignore[arg-type,return-value]
            self._serving_fingerprint,
            self._built,
            lambda: tuple(self._samples),
            store=self.served,
        )
        try:
            self.recognizer = self._start_engines()
        except EngineError as exc:
            if self._stop_requested:  # a stop during a build cancelled it
                return self._stop()
            log.error("engine_failed", reason=str(exc))
            return ExitCode.ENGINE
        if self._signals and self._signals[-1] in (signal.SIGTERM, signal.SIGINT):
            return self._stop()
        self.notifier.status("opening cameras")
        for cam in self.config.cameras:
            if cam.enabled:
                self._open_camera(cam)
        if not self.cameras:
            log.warning("no_cameras", hint="add [[cameras]] to the config and reload")
        self._start_watcher()
        summary = self._summary()
        self.notifier.ready(summary)
        log.info("alprd_ready", status=summary, lanes=self.recognizer.lanes())
        _settle_heap()
        self._observe(summary)
        try:
            self._loop()
        except Exception:
            log.exception("alprd_crashed")
            self._stop()
            return ExitCode.FATAL
        return self._stop()

    def _serve_metrics(self) -> None:
        """Start the metrics endpoint; a port in use is tried again every
        METRICS_RETRY_S (logged once until it works)."""
        assert self.config is not None
        m = self.config.metrics
        if not m.enabled or self._metrics_up or time.monotonic() < self._metrics_retry_at:
            return
        try:
            self.metrics.serve(m.port, m.address)
        except (OSError, ValueError) as exc:  # in use, unresolvable (UnicodeError) ...
            self._metrics_retry_at = time.monotonic() + METRICS_RETRY_S
            if not self._metrics_failed:
                log.warning("metrics_unavailable", port=m.port, reason=str(exc),
                            action=f"trying again every {METRICS_RETRY_S:.0f}s")  # fmt: skip
            self._metrics_failed = True
            return
        self._metrics_up = True

    def _warn_exposed(self, config: cfgmod.Config) -> None:
        exposed = cfgmod.permission_warning(self.config_path, config)
        if exposed:
            log.warning("config_world_readable", problem=exposed)

    def _summary(self) -> str:
        assert self.recognizer is not None
        n = len(self.cameras)
        building = self.rebuilder.pending() if self.rebuilder is not None else []
        return (
            f"running: {n} camera{'s' if n != 1 else ''}, engines {self.recognizer.summary()}"
            + (f" (config generation {self.generation})" if self.generation else "")
            + (f", building {','.join(building)}" if building else "")
        )

    # ------------------------------------------------------------------ engines

    def _overlay(self, config: cfgmod.Config) -> cfgmod.Config:
        """`config` with each role served as the served-models record says (a
        dropped model routed there; its kept copy where the file went bad)."""
        assert self.served is not None
        effective, choices = self.served.overlay(config)
        for role, choice in choices.items():
            if choice.last_good and role in roles_of(effective):
                self.last_good[role] = choice.why
                log.warning(
                    "model_last_good", model=role, reason=choice.why,
                    serving=f"{choice.source.name} {choice.entry.sha256[:12]} (kept copy)"
                    if choice.entry else str(choice.source),
                    hint=f"drop a good model into {config.paths.models_dir} to replace it",
                )  # fmt: skip
        return effective

    def _start_engines(self) -> Recognizer:
        assert self.config is not None
        roles = roles_of(self.config)
        engines: dict[Role, LoadedEngine] = {}
        for i, role in enumerate(roles, start=1):
            self.notifier.status(f"loading engines {i}/{len(roles)} ({role})")
            if self.config.service.startup == "background":
                engines[role] = self._serve_now(self.config, role)
            else:
                engines[role] = self._load_role(role, self._build_extending)
        return Recognizer(self.config, engines)

    def _load_role(self, role: Role, build: Build = default_build) -> LoadedEngine:
        """`role`'s engine as the config says, recorded as served; where that model
        cannot serve (its file went bad, a build is rejected), the last model that
        served the role (kept copy): the daemon then starts and says so. Raises
        EngineError only when no model can serve the role."""
        assert self.config is not None and self.served is not None
        config = self.config
        sha = known = None
        try:
            target = manager.plan(config, role)  # reads the source once: its sha256
            sha = target.inputs.source_sha256
            known = self.served.rejection(role, sha)
            if known is not None:
                raise EngineError(f"{target.request.source.name} was rejected before: {known}")
            loaded = load_engine(config, role, build, target)
        except EngineError as exc:
            if self._stop_requested:
                raise
            if sha is not None and known is None and isinstance(exc, ModelRejected):
                self.served.reject(role, sha, str(exc))  # not tried again at the next start
            fallback = self._last_good_engine(role, str(exc), sha, build)
            if fallback is None:
                raise
            return fallback
        self._record(role, config, loaded)
        return loaded

    def _last_good_engine(
        self, role: Role, reason: str, bad_sha: str | None, build: Build
    ) -> LoadedEngine | None:
        assert self.config is not None and self.served is not None
        store = self.served
        current = store.current(role)
        for entry in [current, *store.history(role)] if current else []:
            kept = store.kept(entry)
            if entry.sha256 == bad_sha or not kept.is_file():
                continue
            config = served.assign(self.config, store.settings(entry, kept, kept=True))
            try:
                loaded = load_engine(config, role, build)
            except EngineError as exc:
                log.warning("model_last_good_failed", model=role, file=str(kept), reason=str(exc))
                continue
            self.config = config
            self.last_good[role] = reason
            log.warning(
                "model_last_good", model=role, reason=reason,
                serving=f"{entry.source.name} {entry.sha256[:12]} (kept copy, since {entry.since})",
                hint="drop a good model into the models directory to replace it",
            )  # fmt: skip
            return loaded
        return None

    def _record(self, role: Role, config: cfgmod.Config, loaded: LoadedEngine) -> None:
        """Keep what serves `role` (its source and engine) for last-known-good."""
        assert self.served is not None
        if loaded.source is None or not loaded.source_sha256:
            return
        cur = self.served.current(role)
        if (
            cur is not None
            and cur.sha256 == loaded.source_sha256
            and loaded.source in (cur.source, self.served.kept(cur))
        ):
            return  # kept already
        entry = served.entry_for(config, role, loaded.source, loaded.source_sha256)
        try:
            self.served.record(entry, loaded.path)
        except OSError as exc:
            log.warning("model_not_kept", model=role, file=str(loaded.source), reason=str(exc),
                        action="serving it; it is not kept for last-known-good")  # fmt: skip

    def _build_extending(self, target: manager.Target, config: cfgmod.Config) -> manager.Outcome:
        """Build if stale, telling systemd to extend the start timeout meanwhile."""
        if not cache.check(target.engine, target.inputs):
            return manager.Outcome(
                target.request.role, "current", target.engine, target.request.backend,
                target.request.precision,
            )  # fmt: skip
        extend = config.service.extend_timeout_s
        req = target.request
        label = f"building {req.role} engine ({req.backend}, {req.precision})"
        done = threading.Event()
        started = time.monotonic()

        def tick() -> None:
            while True:
                self.notifier.extend_timeout(extend)
                self.notifier.status(f"{label} {time.monotonic() - started:.0f}s")
                if done.wait(extend / 3):
                    return

        ticker = threading.Thread(target=tick, name="extend-timeout", daemon=True)
        ticker.start()
        try:
            return manager.ensure(
                target, timeout_s=config.engines.build_timeout_s, nice=config.engines.build_nice,
                cancel=lambda: self._stop_requested,
            )  # fmt: skip
        finally:
            done.set()
            ticker.join(timeout=5)

    def _serve_now(self, config: cfgmod.Config, role: Role) -> LoadedEngine:
        """Background start-up: the configured engine if current; else something
        that serves now (`manager.interim`: the torch backend on the GPU where the
        engines are TensorRT, else ONNX Runtime on the CPU, built first if need be,
        which takes seconds), while the configured one builds behind."""
        target = manager.plan(config, role)
        if not cache.check(target.engine, target.inputs):
            return load_engine(config, role, target=target)  # planned once
        choices = manager.interim(target.request.backend)
        for backend, precision in choices:
            quick = config.model_copy(deep=True)
            getattr(quick.models, role).backend = backend
            getattr(quick.models, role).precision = precision
            try:
                loaded = load_engine(quick, role, self._build_extending)
            except EngineError as exc:
                if backend == choices[-1][0]:
                    raise
                log.warning("engine_interim_unavailable", model=role, backend=backend,
                            reason=str(exc))  # fmt: skip
                continue
            log.info("engine_interim", model=role, backend=backend, building=target.request.backend)
            break
        assert self.rebuilder is not None
        self.rebuilder.request(role)  # the same path as a dropped model
        return loaded

    def _serving_fingerprint(self, role: Role) -> str | None:
        loaded = self.recognizer.engines.get(role) if self.recognizer else None
        return loaded.fingerprint if loaded else None

    def _built(self, built: Built) -> None:
        """From the rebuild thread: hand the new engine to the main loop."""
        self._swaps.append(built)
        self._wake.set()

    def _apply_swaps(self) -> None:
        assert self.recognizer is not None and self.config is not None
        while self._swaps:
            swap = self._swaps.popleft()
            role = swap.loaded.role
            if swap.section is not None:  # the role's settings that came with the build
                self.config = _with_section(self.config, role, swap.section)
            self.last_good.pop(role, None)
            old = self.recognizer.swap(swap.loaded, self.config)
            if old is not None:
                old.engine.close()
            log.info(
                "engine_swapped", model=swap.loaded.role, backend=swap.loaded.backend,
                precision=swap.loaded.precision, old=old.fingerprint[:12] if old else None,
                new=swap.loaded.fingerprint[:12], build_s=swap.build_s,
                generation=self.recognizer.generations[swap.loaded.role],
                source=swap.served.source.name if swap.served else None,
            )  # fmt: skip
            self.notifier.status(self._summary())

    # ------------------------------------------------------------------ models/

    def _start_watcher(self) -> None:
        assert self.config is not None
        m = self.config.models
        if m.watch == "off":
            return
        self.watcher = ModelWatcher(
            self.config.paths.models_dir, self._roles_for, self._model_arrived,
            quiet_s=m.watch_quiet_s, poll=m.watch == "poll", poll_interval_s=m.watch_poll_s,
            on_unclaimed=self._model_unclaimed if m.route else None,
            on_removed=self._model_removed,
        )  # fmt: skip
        self.watcher.start()

    def _roles_for(self, path: Path) -> list[Role]:
        config = self.config
        if config is None:
            return []
        return [r for r in roles_of(config) if getattr(config.models, r).source == path]

    def _model_arrived(self, path: Path, roles: list[Role]) -> None:
        assert self.rebuilder is not None
        for role in roles:
            self.rebuilder.request(role)

    def _model_removed(self, path: Path) -> None:
        """A model file was deleted: the engines built from it go too, unless one
        serves (or another model of the same stem is still there)."""
        siblings = path.parent.glob(f"{glob.escape(path.stem)}.*")
        if self.recognizer is None or any(watch.is_candidate(p) for p in siblings):
            return
        serving = {e.path for e in self.recognizer.engines.values()}
        for artefact in watch.engines_of(path):
            if artefact in serving or artefact.with_suffix("") in serving:
                continue
            try:
                artefact.unlink()
            except OSError as exc:
                log.warning("engine_not_removed", file=str(artefact), reason=str(exc))
                continue
            log.info("engine_removed", file=str(artefact), reason=f"{path.name} was removed")

    def _model_unclaimed(self, path: Path) -> None:
        """A model file no role is served from: identified and routed (rebuild thread)."""
        assert self.rebuilder is not None
        self.rebuilder.request_file(path)

    def _keep_sample(self, cam: Camera, image: Image) -> None:
        """Every SAMPLE_EVERY_S, keep a frame (JPEG in state_dir/samples, the last
        SAMPLES_KEPT) to validate rebuilt engines on what the cameras see."""
        assert self.config is not None
        now = time.monotonic()
        if now < self._next_sample:
            return
        self._next_sample = now + SAMPLE_EVERY_S
        folder = self.config.paths.state_dir / "samples"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{cam.config.name}-{next(self._sample_names) % SAMPLES_KEPT}.jpg"
            if cv2.imwrite(str(path), image):
                if path in self._samples:
                    self._samples.remove(path)
                self._samples.append(path)  # the newest last; the oldest fall off
        except OSError as exc:
            log.warning("sample_not_kept", reason=str(exc))

    # ------------------------------------------------------------------ cameras

    def _open_camera(self, cam: cfgmod.CameraConfig) -> None:
        assert self.config is not None and self.recognizer is not None
        s = self.config.sources
        slot = LatestFrame()
        reader = CameraReader(
            cam.name, cam.url, slot, fps=cam.fps, initial_s=s.reconnect_initial_s,
            max_s=s.reconnect_max_s, open_timeout_s=s.open_timeout_s,
            allocate=self.recognizer.frame_allocator(), loop=cam.loop,
        )  # fmt: skip
        self.cameras[cam.name] = Camera(cam, slot, reader, self._pipeline(cam, self.config))
        reader.start()
        log.info("camera_opened", camera=cam.name, url=redact(cam.url), fps=cam.fps)

    def _pipeline(self, cam: cfgmod.CameraConfig, config: cfgmod.Config) -> CameraPipeline:
        """A camera's stages, tracking and voting (at start, and at each reload)."""
        assert self.recognizer is not None
        return CameraPipeline(
            cam.name, self.recognizer, config, zone=cam.zone, regions=cam.regions,
            keep_snapshots=config.outputs.snapshots.enabled, motion=cam.motion,
        )  # fmt: skip

    def _close_camera(self, name: str, timeout: float = 5.0) -> None:
        cam = self.cameras.pop(name)
        cam.reader.stop()
        cam.reader.join(timeout=timeout)
        for event in cam.pipeline.finish():
            self._emit(cam, event)
        self.metrics.forget_camera(name)
        log.info("camera_closed", camera=name, frames=cam.processed, events=cam.events)

    # ------------------------------------------------------------------ loop

    def _loop(self) -> None:
        assert self.config is not None and self.recognizer is not None
        ping = self.notifier.watchdog_s
        next_ping = time.monotonic()
        next_health = time.monotonic() + self.config.service.health_interval_s
        self._health_at = time.monotonic()
        next_status = time.monotonic() + STATUS_EVERY_S
        next_tick = time.monotonic()
        lanes: Lanes[Any] = Lanes(self.recognizer, self.recognizer.lanes())
        while True:
            while self._signals:
                sig = self._signals.popleft()
                if sig in (signal.SIGTERM, signal.SIGINT):
                    self._finished(lanes.drain())  # nothing in flight is lost
                    return
                if sig == signal.SIGHUP:
                    self._finished(lanes.drain())
                    self._reload()
                    _settle_heap()
                    lanes = Lanes(self.recognizer, self.recognizer.lanes())
            if self._swaps:  # engines change between batches, none in flight
                self._finished(lanes.drain())
                self._apply_swaps()
                _settle_heap()
            busy = False
            if lanes.free:
                ready = [
                    (cam, frame)
                    for cam in list(self.cameras.values())
                    if (frame := cam.slot.take(timeout=0)) is not None
                ]
                if ready:
                    # one frame of every camera that has one, each stage batched across
                    # them; with 2 lanes, the next batch is set up while this one runs
                    busy = True
                    batch = Batch.begin(self.recognizer, [(c.pipeline, f) for c, f in ready])
                    if batch.steps is None:  # every frame skipped by motion gating
                        self._finished([((ready, batch), [])])
                    else:
                        lanes.submit(batch.steps, (ready, batch))
            if lanes.busy:
                busy = True
                self._finished(lanes.step())
            now = time.monotonic()
            if ping is not None and now >= next_ping:
                self.notifier.watchdog()
                next_ping = now + ping
            if now >= next_tick:  # passes of cameras gone quiet still end
                for cam in list(self.cameras.values()):
                    sent = cam.slot.last_put
                    if sent is not None and now - sent <= self.config.tracking.max_age_s:
                        continue  # frames still come: they end the passes
                    for event in cam.pipeline.tick(time.time()):
                        self._emit(cam, event)
                if self.outputs is not None:
                    self.outputs.retry(now)
                next_tick = now + 0.5
            if now >= next_status:
                self._serve_metrics()
                self._observe(self._summary())
                next_status = now + STATUS_EVERY_S
            if now >= next_health:
                self._health()
                next_health = now + self.config.service.health_interval_s
            if not busy:
                self._wake.wait(0.01)
                self._wake.clear()

    def _finished(self, done: list[tuple[Any, Any]]) -> None:
        """Batches whose stages are done, in the order they were submitted: votes,
        events, counters."""
        for (ready, batch), results in done:
            for (cam, frame), events in zip(ready, batch.finish(results), strict=True):
                for event in events:
                    self._emit(cam, event)
                cam.processed += 1
                cam.window_frames += 1
                self._keep_sample(cam, frame.image)
                self.metrics.frames.labels(cam.config.name).inc()
                if self.on_frame is not None:
                    self.on_frame(cam.config.name, frame.index)
            self._observe_stages()

    def _observe_stages(self) -> None:
        """Each stage time measured since the last call, into the histogram (one
        per batch of cameras)."""
        assert self.recognizer is not None
        times = self.recognizer.times
        for stage, values in times.samples.items():
            new = times.count[stage] - self._stage_seen.get(stage, 0)
            for value in values[-new:] if new > 0 else []:
                self.metrics.stage.labels(stage).observe(value)
            self._stage_seen[stage] = times.count[stage]

    def _emit(self, cam: Camera, event: PlateEvent) -> None:
        cam.events += 1
        log.info(
            "plate_event", camera=event.camera, plate=event.plate, confidence=event.confidence,
            reads=event.reads, vehicle=event.vehicle_class, known=event.known_label,
            format=event.format,
        )  # fmt: skip
        snapshot = cam.pipeline.take_snapshot(event)  # taken always: none left behind
        if self.outputs is not None:
            record = self.outputs.emit(event, snapshot)
            if self.status_writer is not None:
                self.status_writer.last_events.append(record)
        self.metrics.events.labels(event.camera).inc()
        if self.on_event is not None:
            self.on_event(event)

    def _health(self) -> None:
        """One journal line: each camera's frame rate since the last line (over the
        time that really passed), drops, reads, events."""
        now = time.monotonic()
        elapsed = max(1e-3, now - self._health_at)
        self._health_at = now
        parts = {
            name: f"{cam.window_frames / elapsed:.1f}fps/{cam.reader.state}"
            for name, cam in self.cameras.items()
        }
        log.info(
            "health",
            cameras=",".join(f"{k}:{v}" for k, v in parts.items()) or "none",
            drops=sum(c.slot.dropped for c in self.cameras.values()),
            reads=sum(c.pipeline.reads for c in self.cameras.values()),
            events=sum(c.events for c in self.cameras.values()),
        )
        for cam in self.cameras.values():
            cam.window_frames = 0

    def _observe(self, summary: str) -> None:
        """Refresh the metrics gauges and the status file."""
        m = self.metrics
        engines: dict[str, EngineStatus] = {}
        if self.recognizer is not None:
            for role, e in self.recognizer.engines.items():
                generation = self.recognizer.generations.get(role, 1)
                m.generation.labels(role).set(generation)
                m.last_good.labels(role).set(1 if role in self.last_good else 0)
                entry = self.served.current(role) if self.served is not None else None
                if entry is not None and entry.sha256 != e.source_sha256:
                    entry = None
                engines[role] = EngineStatus(
                    backend=e.backend, precision=e.precision,
                    fingerprint=e.fingerprint[:12], generation=generation,
                    source=str(entry.source if entry else e.source or ""),
                    sha256=e.source_sha256[:12],
                    since=entry.since if entry else None,
                    served=entry.generation if entry else None,
                    last_good=self.last_good.get(role),
                )  # fmt: skip
        cameras = {}
        for name, cam in self.cameras.items():
            m.dropped.labels(name).set(cam.slot.dropped)
            m.reads.labels(name).set(cam.pipeline.reads)
            m.camera_up.labels(name).set(1 if cam.reader.state == "streaming" else 0)
            voter = cam.pipeline.voter
            m.passes.labels(name).set(len(voter.open_passes))
            m.reads_held.labels(name).set(voter.reads_held)
            cameras[name] = CameraStatus(
                state=cam.reader.state,
                processed=cam.processed,
                dropped=cam.slot.dropped,
                reads=cam.pipeline.reads,
                still=cam.pipeline.gated,
                events=cam.events,
                reconnects=cam.reader.reconnects,
            )
        outbox = {}
        if self.outputs is not None and self.outputs.outbox is not None:
            for name in self.outputs.queued:
                try:
                    outbox[name] = self.outputs.outbox.pending(name)
                except SinkError:  # closed (the final status at stop) or unreadable
                    continue
                m.outbox.labels(name).set(outbox[name])
        backlog = self.outputs.backlog() if self.outputs is not None else {}
        for name in self._backlog_names | set(backlog):
            m.backlog.labels(name).set(backlog.get(name, 0))
        self._backlog_names |= set(backlog)
        if self.rebuilder is not None:
            m.builds.set(self.rebuilder.builds)
        if self.status_writer is not None:
            self.status_writer.write(
                Status(
                    pid=os.getpid(),
                    started_at=self.started_at,
                    updated_at=time.time(),
                    status=summary,
                    engines=engines,
                    cameras=cameras,
                    outbox=outbox,
                    backlog=backlog,
                )
            )

    # ------------------------------------------------------------------ reload

    def _reload(self) -> None:
        assert self.config is not None and self.recognizer is not None
        self.notifier.reloading()
        log.info("reloading_config", config=str(self.config_path))
        try:
            new = cfgmod.load(self.config_path)
            self._warn_exposed(new)
            self._apply(self._overlay(new))
        except cfgmod.ConfigError as exc:
            for problem in exc.problems:
                log.error("config_invalid", problem=str(problem), action="kept the running config")
        except EngineError as exc:
            log.error("reload_failed", reason=str(exc), action="kept the running engines")
        self.notifier.ready(self._summary())

    def _apply(self, new: cfgmod.Config) -> None:
        assert self.config is not None and self.recognizer is not None
        old = self.config
        changed_roles = [
            role
            for role in roles_of(new)
            if role not in self.recognizer.engines
            or any(
                getattr(getattr(old.models, role), k, None)
                != getattr(getattr(new.models, role), k, None)
                for k in _ENGINE_KEYS
            )
            or old.engines.model_dump() != new.engines.model_dump()
        ]
        # A role that serves already keeps its engine, and that engine's settings, until
        # the new one is built in the background and swapped in (the cameras never wait
        # for a build); a role that comes back (vehicle re-enabled) is loaded now.
        added = [r for r in changed_roles if r not in self.recognizer.engines]
        pending = [r for r in changed_roles if r in self.recognizer.engines]
        loaded = {role: load_engine(new, role, self._build_extending) for role in added}
        for role in [r for r in self.recognizer.engines if r not in roles_of(new)]:
            self.recognizer.engines.pop(role).engine.close()
        wanted = {c.name: c for c in new.cameras if c.enabled}
        for name in list(self.cameras):  # removed or changed: closed (open passes decided)
            if wanted.get(name) != self.cameras[name].config:
                self._close_camera(name)
        target = new
        for role in pending:
            new = _with_section(new, role, getattr(old.models, role))
        self.config = new
        for lo in loaded.values():  # roles not served until now: nothing to close
            self.recognizer.swap(lo, new)
        self.recognizer.configure(new)
        for cam in self.cameras.values():  # kept: reader untouched, stages renewed
            for event in cam.pipeline.finish():
                self._emit(cam, event)
            cam.pipeline = self._pipeline(cam.config, new)
        for name, cam_config in wanted.items():
            if name not in self.cameras:
                self._open_camera(cam_config)
        if self.outputs is not None:
            self.outputs.announce(list(self.cameras))
        self.generation += 1
        assert self.rebuilder is not None
        for role in pending:
            self.rebuilder.request(role, config=target)
        log.info(
            "config_applied", generation=self.generation, cameras=len(self.cameras),
            engines_loaded=",".join(added) or "none",
            engines_building=",".join(pending) or "none",
        )  # fmt: skip

    # ------------------------------------------------------------------ stop

    def _stop(self) -> int:
        self._stopping = True
        self.notifier.stopping()
        log.info("alprd_stopping")
        timeout = self.config.service.stop_timeout_s if self.config else 10.0
        deadline = time.monotonic() + timeout
        if self.watcher is not None:
            self.watcher.stop()
        if self.rebuilder is not None:
            self.rebuilder.stop(timeout=max(0.1, deadline - time.monotonic()))
        for cam in list(self.cameras.values()):
            cam.reader.stop()
        for name in list(self.cameras):
            self._close_camera(name, timeout=max(0.1, deadline - time.monotonic()))
        if self.recognizer is not None:
            self.recognizer.close()
        if self.outputs is not None:
            self.outputs.close(timeout=max(0.1, deadline - time.monotonic()))
        late = time.monotonic() > deadline
        self._observe("stopped")
        log.info("alprd_stopped", within_deadline=not late)
        return ExitCode.OK
