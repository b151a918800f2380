"""The daemon (`alprd run`): start-up phase, main loop, reload, stop.

Start order: config -> engines (built if stale, reported to systemd) -> cameras ->
READY. Stop order is the reverse: cameras -> decide open passes -> engines.
Signal handlers only record the signal; the main loop acts on it. WATCHDOG=1 is
sent by the main loop itself, so a hung inference or a stuck loop stops the pings
and systemd restarts the service; a dead camera does not (its reader thread
reconnects on its own).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alprd import config as cfgmod
from alprd import heap, watch
from alprd.cameras import Camera, Cameras, Samples
from alprd.control import STOP, Control
from alprd.engines import served, serving
from alprd.engines.base import EngineError, Role
from alprd.engines.served import ServedModels
from alprd.engines.serving import engine_changes, load_engine, roles_of
from alprd.exitcodes import ExitCode
from alprd.log import get_logger
from alprd.observe import EngineStatus, Metrics, Status, StatusWriter
from alprd.pipeline.lanes import BatchWindow, Lanes
from alprd.pipeline.lists import PlateLists
from alprd.pipeline.recognizer import Recognizer
from alprd.pipeline.stream import Batch
from alprd.pipeline.types import PlateEvent
from alprd.rebuild import Built, Rebuilder
from alprd.sinks.base import SinkError
from alprd.sinks.gate import Gate
from alprd.sinks.lists import LiveLists
from alprd.sinks.outputs import Outputs
from alprd.sinks.privacy import Concealer
from alprd.startup import Startup
from alprd.systemd import Notifier
from alprd.watch import ModelWatcher

log = get_logger("alprd.service")

STATUS_EVERY_S = 2.0  # status file and metrics gauges


@dataclass
class Service:
    config_path: Path
    notifier: Notifier = field(default_factory=Notifier)
    on_event: Callable[[PlateEvent], None] | None = None
    #: Called after each processed frame with (camera, frame index): benchmarks, tests.
    on_frame: Callable[[str, int], None] | None = None

    def __post_init__(self) -> None:
        self.control = Control()
        self._swaps: deque[Built] = deque()
        self.watcher: ModelWatcher | None = None
        self.outputs: Outputs | None = None
        self.conceal: Concealer | None = None  # privacy.hash_plates
        self.lists: LiveLists | None = None
        self.gate: Gate | None = None  # with gate cameras
        self.metrics = Metrics()
        self.cameras = Cameras(self.metrics, self._emit)
        self.status_writer: StatusWriter | None = None
        self.started_at = time.time()
        self.rebuilder: Rebuilder | None = None
        self.samples = Samples()
        #: batches submitted and the frames in them since the last health line
        self._window_batches = self._window_batched = 0
        self.recognizer: Recognizer | None = None
        self.config: cfgmod.Config | None = None  # what serves: the file + served models
        self.generation = 0
        self.served: ServedModels | None = None
        self.startup: Startup | None = None

    def request_stop(self) -> None:
        self.control.ask(signal.SIGTERM)

    def request_reload(self) -> None:
        self.control.ask(signal.SIGHUP)

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        self.control.install()
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
        self.startup = Startup(
            self.served, self.notifier, lambda: self.control.stop_requested, self._build_later
        )
        self.config = self.startup.overlay(config)
        self.status_writer = StatusWriter(self.config.paths.state_dir)
        self._serve_metrics()
        try:
            self.conceal = Concealer.for_daemon(self.config.privacy)
            self.outputs = Outputs.open(self.config)
            self.lists = LiveLists.of(self.config)
            self.gate = self._open_gate(self.config)
        except (SinkError, OSError, ValueError, sqlite3.Error) as exc:
            log.error("outputs_failed", reason=str(exc))
            return ExitCode.FATAL
        self.rebuilder = Rebuilder(
            lambda: self.config,  # type: ignore[arg-type,return-value]
            self._serving_fingerprint,
            self._built,
            lambda: self.samples.paths,
            store=self.served,
        )
        try:
            self.recognizer = self._start_engines()
        except EngineError as exc:
            if self.control.stop_requested:  # a stop during a build cancelled it
                return self._stop()
            log.error("engine_failed", reason=str(exc))
            return ExitCode.ENGINE
        if self.control.stop_pending:
            return self._stop()
        heap.configure(heap_threshold_kb(self.config, self.recognizer))  # before any camera's frame
        self.notifier.status("opening cameras")
        self.cameras.apply(self.config, self.recognizer)
        if not self.cameras:
            log.warning("no_cameras", hint="add [[cameras]] to the config and reload")
        self._start_watcher()
        summary = self._summary()
        self.notifier.ready(summary)
        log.info("alprd_ready", status=summary, lanes=self.recognizer.lanes())
        heap.settle()
        self._observe(summary)
        try:
            self._loop()
        except Exception:
            log.exception("alprd_crashed")
            self._stop()
            return ExitCode.FATAL
        return self._stop()

    def _serve_metrics(self) -> None:
        assert self.config is not None
        if self.config.metrics.enabled:
            self.metrics.serve(self.config.metrics.port, self.config.metrics.address)

    def _warn_exposed(self, config: cfgmod.Config) -> None:
        exposed = cfgmod.permission_warning(self.config_path, config)
        if exposed:
            log.warning("config_world_readable", problem=exposed)
        if config.privacy.hash_plates and config.outputs.snapshots.enabled:
            hint = "snapshots show plates: outputs.snapshots.enabled = false keeps none"
            log.warning("plates_in_snapshots", hint=hint)

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

    def _start_engines(self) -> Recognizer:
        """Every role's engine (see `Startup.engines`), serving from now on. Not
        inline in `run`: a local there lives as long as the daemon, and would keep
        the first engines alive after a swap replaced them."""
        assert self.config is not None and self.startup is not None
        self.config, engines = self.startup.engines(self.config)
        return Recognizer(self.config, engines)

    @property
    def last_good(self) -> dict[Role, str]:
        """Role -> why its last good model serves instead of the configured one."""
        return self.startup.last_good if self.startup is not None else {}

    def _build_later(self, role: Role) -> None:
        assert self.rebuilder is not None
        self.rebuilder.request(role)

    def _serving_fingerprint(self, role: Role) -> str | None:
        loaded = self.recognizer.engines.get(role) if self.recognizer else None
        return loaded.fingerprint if loaded else None

    def _built(self, built: Built) -> None:
        """From the rebuild thread: hand the new engine to the main loop."""
        self._swaps.append(built)
        self.control.wake.set()

    def _apply_swaps(self) -> None:
        assert self.recognizer is not None and self.config is not None
        while self._swaps:
            swap = self._swaps.popleft()
            role = swap.loaded.role
            if swap.section is not None:  # the role's settings that came with the build
                self.config = self.config.with_model(role, swap.section)
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
        return roles_of(self.config, path) if self.config is not None else []

    def _model_arrived(self, path: Path, roles: list[Role]) -> None:
        assert self.rebuilder is not None
        for role in roles:
            self.rebuilder.request(role)

    def _model_removed(self, path: Path) -> None:
        """A model file was deleted: the engines built from it go too, unless one
        serves (or another model of the same stem is still there)."""
        if self.recognizer is not None:
            watch.drop_engines_of(
                path, {e.path for e in self.recognizer.engines.values() if e.path}
            )

    def _model_unclaimed(self, path: Path) -> None:
        """A model file no role is served from: identified and routed (rebuild thread)."""
        assert self.rebuilder is not None
        self.rebuilder.request_file(path)

    # ------------------------------------------------------------------ loop

    def _loop(self) -> None:
        assert self.config is not None and self.recognizer is not None
        ping = self.notifier.watchdog_s
        next_ping = time.monotonic()
        next_health = time.monotonic() + self.config.service.health_interval_s
        self.cameras.health()  # the health line's first window starts with the loop
        next_status = time.monotonic() + STATUS_EVERY_S
        next_tick = time.monotonic()
        lanes: Lanes[Any] = Lanes(self.recognizer, self.recognizer.lanes())
        window = BatchWindow(self.config.service.batch_window_ms / 1000.0)
        while True:
            while (sig := self.control.next()) is not None:
                if sig in STOP:
                    self._finished(lanes.drain())  # nothing in flight is lost
                    return
                if sig == signal.SIGHUP:
                    self._finished(lanes.drain())
                    self._reload()
                    heap.settle()
                    lanes = Lanes(self.recognizer, self.recognizer.lanes())
                    window = BatchWindow(self.config.service.batch_window_ms / 1000.0)
            if self._swaps:  # engines change between batches, none in flight
                self._finished(lanes.drain())
                self._apply_swaps()
                heap.settle()
            busy = False
            if lanes.free and window.due(*self.cameras.waiting(), lanes.busy, time.monotonic()):
                ready = self.cameras.ready()
                if ready:
                    # one frame of every camera that has one, each stage batched across
                    # them; with 2 lanes, the next batch is set up while this one runs
                    busy = True
                    self._window_batches += 1
                    self._window_batched += len(ready)
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
                self.cameras.tick(self.config.tracking.max_age_s)
                if self.outputs is not None:
                    self.outputs.retry(now)
                    self.outputs.prune(now)
                if self.lists is not None:
                    self.lists.refresh(now)
                next_tick = now + 0.5
            if now >= next_status:
                self._serve_metrics()
                self._observe(self._summary())
                next_status = now + STATUS_EVERY_S
            if now >= next_health:
                log.info("health", **self.cameras.health(now), batch=self._batch_mean())
                next_health = now + self.config.service.health_interval_s
            if not busy:
                self.control.wake.wait(0.01)
                self.control.wake.clear()

    def _batch_mean(self) -> float:
        """Frames per batch (cameras that had a frame when the loop took them) since
        the last health line; 0 when no frame came. The window then starts again."""
        mean = self._window_batched / self._window_batches if self._window_batches else 0.0
        self._window_batches = self._window_batched = 0
        return round(mean, 1)

    def _finished(self, done: list[tuple[Any, Any]]) -> None:
        """Batches whose stages are done, in the order they were submitted: votes,
        events, counters."""
        assert self.config is not None and self.recognizer is not None
        samples = self.config.paths.state_dir / "samples"
        for (ready, batch), results in done:
            for (cam, frame), events in zip(ready, batch.finish(results), strict=True):
                for event in events:
                    self._emit(cam, event)
                for call in cam.pipeline.take_calls():
                    if self.gate is not None:
                        self.gate.submit(call)
                cam.processed += 1
                cam.window_frames += 1
                self.samples.offer(samples, cam.name, frame.image)
                self.metrics.frames.labels(cam.config.name).inc()
                if self.on_frame is not None:
                    self.on_frame(cam.config.name, frame.index)
            times = self.recognizer.times
            self.metrics.observe_stages(times.samples, times.count)

    def _open_gate(self, config: cfgmod.Config) -> Gate | None:
        """The gate of `config`'s gate cameras, deciding by the lists as they are."""

        def lists() -> PlateLists:
            assert self.lists is not None
            return self.lists.current

        return Gate.of(config, lists, self.conceal.hash if self.conceal else None)

    def _emit(self, cam: Camera, event: PlateEvent) -> None:
        cam.events += 1
        snapshot = cam.pipeline.take_snapshot(event)  # taken always: none left behind
        event = self.lists.apply(event) if self.lists else event
        event = self.conceal(event) if self.conceal else event
        log.info(
            "plate_event", camera=event.camera, plate=event.plate, confidence=event.confidence,
            reads=event.reads, vehicle=event.vehicle_class, known=event.known_label,
            format=event.format, decision=event.decision, list=event.list_name,
            direction=event.direction,
        )  # fmt: skip
        if self.outputs is not None:
            record = self.outputs.emit(event, snapshot)
            if self.status_writer is not None:
                self.status_writer.last_events.append(record)
        self.metrics.events.labels(event.camera).inc()
        if self.on_event is not None:
            self.on_event(event)

    def _observe(self, summary: str) -> None:
        """Refresh the metrics gauges and the status file."""
        m = self.metrics
        engines: dict[str, EngineStatus] = {}
        if self.recognizer is not None:
            for role, loaded in self.recognizer.engines.items():
                generation = self.recognizer.generations.get(role, 1)
                m.generation.labels(role).set(generation)
                m.last_good.labels(role).set(1 if role in self.last_good else 0)
                entry = self.served.current(role) if self.served is not None else None
                engines[role] = serving.status(loaded, generation, entry, self.last_good.get(role))
        cameras = self.cameras.observe()
        outbox = self.outputs.pending() if self.outputs is not None else {}
        backlog = self.outputs.backlog() if self.outputs is not None else {}
        m.observe_outputs(outbox, backlog)
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
        assert self.startup is not None
        self.notifier.reloading()
        log.info("reloading_config", config=str(self.config_path))
        try:
            new = cfgmod.load(self.config_path)
            self._warn_exposed(new)
            self._apply(self.startup.overlay(new))
        except cfgmod.ConfigError as exc:
            for problem in exc.problems:
                log.error("config_invalid", problem=str(problem), action="kept the running config")
        except EngineError as exc:
            log.error("reload_failed", reason=str(exc), action="kept the running engines")
        self.notifier.ready(self._summary())

    def _apply(self, new: cfgmod.Config) -> None:
        assert self.config is not None and self.recognizer is not None
        assert self.startup is not None
        old = self.config
        changes = engine_changes(old, new, self.recognizer.engines)
        # A role that serves already keeps its engine, and that engine's settings, until
        # the new one is built in the background and swapped in (the cameras never wait
        # for a build); a role that comes back (vehicle re-enabled) is loaded now.
        added, pending = changes.added, changes.rebuilt
        loaded = {role: load_engine(new, role, self.startup.build_extending) for role in added}
        for role in changes.removed:
            self.recognizer.engines.pop(role).engine.close()
        target = new
        for role in pending:
            new = new.with_model(role, getattr(old.models, role))
        self.config = new
        for lo in loaded.values():  # roles not served until now: nothing to close
            self.recognizer.swap(lo, new)
        self.recognizer.configure(new)
        self.cameras.apply(new, self.recognizer)
        if self.outputs is not None:
            self.outputs.announce(self.cameras.names())
        if self.lists is not None:
            self.lists.close()
        self.lists = LiveLists.of(new)  # [lists] and [plates.known] as reloaded
        if self.gate is not None:
            self.gate.close()
        try:
            self.gate = self._open_gate(new)
        except (OSError, sqlite3.Error) as exc:
            self.gate = None
            log.error("gate_failed", reason=str(exc), action="no gate actions until a reload")
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
        self.control.stopping = True
        self.notifier.stopping()
        log.info("alprd_stopping")
        timeout = self.config.service.stop_timeout_s if self.config else 10.0
        deadline = time.monotonic() + timeout
        if self.watcher is not None:
            self.watcher.stop()
        if self.rebuilder is not None:
            self.rebuilder.stop(timeout=max(0.1, deadline - time.monotonic()))
        self.cameras.close_all(deadline)
        if self.recognizer is not None:
            self.recognizer.close()
        if self.gate is not None:
            self.gate.close(timeout=max(0.1, deadline - time.monotonic()))
        if self.outputs is not None:
            self.outputs.close(timeout=max(0.1, deadline - time.monotonic()))
        late = time.monotonic() > deadline
        self._observe("stopped")
        log.info("alprd_stopped", within_deadline=not late)
        return ExitCode.OK


def heap_threshold_kb(config: cfgmod.Config, recognizer: Recognizer) -> int:
    """`service.heap_mmap_threshold_kb`, "auto" resolved: decoded frames and the
    detectors' blocks on the host get pages of their own; where the engines work
    on a GPU the frames are in its memory or in page-locked buffers, not on the C
    heap, and glibc keeps its own threshold."""
    kb = config.service.heap_mmap_threshold_kb
    if kb != "auto":
        return kb
    return 0 if recognizer.on_gpu() else heap.HOST_THRESHOLD_KB
