"""What the running daemon shows about itself: Prometheus metrics on a loopback
port, and a status file (`state_dir/status.json`) that `alprd status` reads."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import (
    GC_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from alprd.log import get_logger

log = get_logger("alprd.observe")

STATUS_FILE = "status.json"
METRICS_RETRY_S = 30.0  # a metrics port in use is tried again this often
T = TypeVar("T")


class Metrics:
    """The daemon's Prometheus metrics, in their own registry, with the process's
    own (resident memory, open fds, CPU seconds: `process_*`) and the Python
    garbage collector's (`python_gc_*`), to watch a long run from outside."""

    def __init__(self) -> None:
        self._serving = self._failed = False
        self._retry_at = 0.0
        self._stage_seen: dict[str, int] = {}
        self._backlog_names: set[str] = set()
        r = self.registry = CollectorRegistry()
        r.register(PROCESS_COLLECTOR)
        r.register(GC_COLLECTOR)
        self.frames = Counter("alprd_frames", "Frames processed", ["camera"], registry=r)
        self.dropped = Gauge(
            "alprd_frames_dropped", "Frames a camera delivered that were never processed",
            ["camera"], registry=r,
        )  # fmt: skip
        self.stage = Histogram(
            "alprd_stage_seconds", "Time per frame in each stage", ["stage"], registry=r,
            buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
        )  # fmt: skip
        self.reads = Gauge(
            "alprd_reads", "Plate reads that passed the rules", ["camera"], registry=r
        )
        self.events = Counter(
            "alprd_events", "Events (vehicle passes) emitted", ["camera"], registry=r
        )
        self.outbox = Gauge(
            "alprd_outbox_pending", "Events waiting for an output", ["output"], registry=r
        )
        self.backlog = Gauge(
            "alprd_output_backlog",
            "Events held in memory for an output that cannot write (full or read-only disk)",
            ["output"], registry=r,
        )  # fmt: skip
        self.generation = Gauge(
            "alprd_engine_generation", "Engine generation", ["model"], registry=r
        )
        self.builds = Gauge("alprd_engine_builds", "Background engine builds", registry=r)
        self.last_good = Gauge(
            "alprd_model_last_good",
            "1 while a role is served by its last good model because its file was rejected "
            "or is gone", ["model"], registry=r,
        )  # fmt: skip
        self.camera_up = Gauge("alprd_camera_up", "1 when a camera streams", ["camera"], registry=r)
        self.passes = Gauge(
            "alprd_passes_open", "Vehicle passes being read (tracks with reads)", ["camera"],
            registry=r,
        )  # fmt: skip
        self.reads_held = Gauge(
            "alprd_pass_reads_held",
            "Reads the open passes keep to vote on (at most voting.max_reads each)",
            ["camera"], registry=r,
        )  # fmt: skip

    def forget_camera(self, name: str) -> None:
        """Drop a removed camera's series (a site that renames cameras over months
        would otherwise serve every name it ever had)."""
        for metric in (self.frames, self.dropped, self.reads, self.events, self.camera_up,
                       self.passes, self.reads_held):  # fmt: skip
            with contextlib.suppress(KeyError):
                metric.remove(name)

    def serve(self, port: int, address: str = "127.0.0.1") -> bool:
        """Start the endpoint, once; where it cannot start (a port in use, an
        address that does not resolve) it is tried again on a call after
        METRICS_RETRY_S, logged once until it works. True while serving."""
        if self._serving or time.monotonic() < self._retry_at:
            return self._serving
        try:
            start_http_server(port, addr=address, registry=self.registry)
        except (OSError, ValueError) as exc:  # in use, unresolvable (UnicodeError) ...
            self._retry_at = time.monotonic() + METRICS_RETRY_S
            if not self._failed:
                log.warning("metrics_unavailable", port=port, reason=str(exc),
                            action=f"trying again every {METRICS_RETRY_S:.0f}s")  # fmt: skip
            self._failed = True
            return False
        log.info("metrics_serving", address=address, port=port)
        self._serving = True
        return True

    def observe_stages(
        self, samples: Mapping[str, Sequence[float]], count: Mapping[str, int]
    ) -> None:
        """Each stage's times measured since the last call (`samples`: the latest
        times per stage, `count`: how many were ever measured) into the histogram."""
        for stage, values in samples.items():
            new = count[stage] - self._stage_seen.get(stage, 0)
            for value in values[-new:] if new > 0 else []:
                self.stage.labels(stage).observe(value)
            self._stage_seen[stage] = count[stage]

    def observe_outputs(self, outbox: Mapping[str, int], backlog: Mapping[str, int]) -> None:
        """What waits in the outbox and in memory, per output (an output whose
        backlog emptied reads 0, not its last number)."""
        for name, n in outbox.items():
            self.outbox.labels(name).set(n)
        for name in self._backlog_names | set(backlog):
            self.backlog.labels(name).set(backlog.get(name, 0))
        self._backlog_names |= set(backlog)


@dataclass(frozen=True)
class EngineStatus:
    """The engine serving a role, and the model it was built from."""

    backend: str
    precision: str
    fingerprint: str  # first 12 hex digits
    generation: int  # 1 at start-up, +1 at each swap
    source: str  # the model file
    sha256: str  # the model file's, first 12 hex digits
    since: str | None = None  # when this model began to be served
    served: int | None = None  # its place among the models this role has served
    last_good: str | None = None  # why it serves the last good model, if it does


@dataclass(frozen=True)
class CameraStatus:
    state: str  # streaming, reconnecting, ended, ...
    processed: int  # frames
    dropped: int  # frames it delivered that were never processed
    reads: int
    still: int  # frames not searched: nothing moved
    events: int
    reconnects: int
    decoder: str = "cpu"  # cpu (OpenCV) or nvdec (the GPU's video decoder)


@dataclass
class Status:
    """The state file: what `alprd status` prints."""

    pid: int
    started_at: float
    updated_at: float
    status: str
    engines: dict[str, EngineStatus] = field(default_factory=dict)
    cameras: dict[str, CameraStatus] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    last_events: list[dict[str, Any]] = field(default_factory=list)  # event records

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        """The status a daemon wrote (an older or newer one too: keys this version
        does not know are ignored, missing ones take their defaults)."""
        return cls(
            **{
                k: v
                for k, v in data.items()
                if k in _known(cls) and k not in ("engines", "cameras")
            },
            engines={r: _typed(EngineStatus, e) for r, e in data.get("engines", {}).items()},
            cameras={n: _typed(CameraStatus, c) for n, c in data.get("cameras", {}).items()},
        )


def _known(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _typed(cls: type[T], data: dict[str, Any]) -> T:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]  # a dataclass, as every caller passes
        if f.name in data:
            kwargs[f.name] = data[f.name]
        elif f.default is MISSING:  # written by a version without it
            kwargs[f.name] = 0 if f.type == "int" else ""
    return cls(**kwargs)


class StatusWriter:
    def __init__(self, state_dir: Path, keep_events: int = 10) -> None:
        self.path = state_dir / STATUS_FILE
        self.last_events: deque[dict[str, Any]] = deque(maxlen=keep_events)
        self._failing = False

    def write(self, status: Status) -> None:
        """Atomically (temp file + rename); a failure is logged, never raised."""
        status.last_events = list(self.last_events)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(asdict(status), indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if not self._failing:  # once per change of state, not every 2 s
                log.warning("status_not_written", file=str(self.path), reason=str(exc))
            self._failing = True
            return
        if self._failing:
            log.info("status_written_again", file=str(self.path))
        self._failing = False


def read_status(state_dir: Path) -> Status | None:
    """The status file; None when there is none (or it is unreadable as JSON).
    PermissionError when this user may not read it."""
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
        return Status.from_json(data)
    except PermissionError:
        raise
    except (OSError, ValueError, TypeError):
        return None


def is_running(status: Status, stale_after_s: float) -> bool:
    try:
        os.kill(status.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user (the service's dynamic user)
    return time.time() - status.updated_at <= stale_after_s
