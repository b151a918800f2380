"""The configured outputs, as one object the daemon hands each event to.

Local outputs (SQLite, JSONL) are written at once; network outputs (MQTT, webhook)
go through the durable outbox, so an event is acknowledged once it is committed
there. A failing output is logged once per change of state and never stops the
pipeline or the other outputs. Events an output could not take (a full or
read-only state directory, a locked database) wait in memory, in order, up to
`backlog_max` per output, and are written first, in order, as soon as it takes
writes again (tried every `backlog_retry_s` and on each new event): a disk that
fills up for a while delays reads, it does not lose them. Beyond `backlog_max`
the oldest are dropped, with a warning. A snapshot that cannot be saved is not
kept (the event goes out without it).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from alprd import config as cfgmod
from alprd.log import get_logger
from alprd.pipeline.stream import Snapshot
from alprd.pipeline.types import PlateEvent
from alprd.settings.outputs import StorageConfig
from alprd.sinks.base import Record, Sink, SinkError, event_to_dict, new_event_id
from alprd.sinks.jsonl import JsonlSink
from alprd.sinks.mqtt import MqttSink
from alprd.sinks.outbox import Outbox, Retry
from alprd.sinks.snapshots import SnapshotStore
from alprd.sinks.sqlite import Pruned, SqliteSink
from alprd.sinks.webhook import WebhookSink

log = get_logger("alprd.outputs")
T = TypeVar("T")


class _Opener(Generic[T]):
    """An output's object (a sink, the outbox, the snapshot store), opened on first
    use and again after a failed open: an output that cannot open at start (a
    read-only or full state directory) opens once it can."""

    def __init__(self, name: str, make: Callable[[], T]) -> None:
        self.name, self._make = name, make
        self.obj: T | None = None

    def get(self) -> T:
        if self.obj is None:
            self.obj = self._make()
        return self.obj


@dataclass
class _Output:
    """One destination of records (a local sink, or the outbox queue of a network
    sink) and the records it has not taken yet."""

    name: str
    write: Callable[[Record], None]
    opener: _Opener[Any]  # what must be open for `write` to work
    backlog: deque[Record] = field(default_factory=deque)
    dropped: int = 0
    failing: bool = False


class Outputs:
    def __init__(
        self,
        local: list[_Opener[Sink]],
        network: list[Sink],
        outbox: _Opener[Outbox] | None,
        snapshots: _Opener[SnapshotStore] | None = None,
        *,
        backlog_max: int = 10_000,
        retry_s: float = 2.0,
        storage: StorageConfig | None = None,
    ) -> None:
        self._local, self._network, self._outbox = local, network, outbox
        self._snapshots = snapshots
        self.queued = [s.name for s in network]
        self.backlog_max, self.retry_s = backlog_max, retry_s
        self._outputs = [_Output(o.name, _write_to(o), o) for o in local]
        if outbox is not None:
            for name in self.queued:
                self._outputs.append(_Output(f"outbox:{name}", _queue(outbox, name), outbox))
        self._snapshots_failing = False
        self._next_retry = 0.0
        self.written = 0
        self.storage = storage or StorageConfig()
        self._next_prune = 0.0
        self.pruned = 0

    @property
    def outbox(self) -> Outbox | None:
        return self._outbox.obj if self._outbox is not None else None

    @classmethod
    def open(cls, config: cfgmod.Config) -> Outputs:
        """Open every enabled output. One that cannot be opened (a read-only or
        full state directory, a bad path) is logged with the reason; its events
        wait in memory and it is opened again until it can be: the pipeline and
        the other outputs run on."""
        o = config.outputs
        j, box, snaps = o.jsonl, o.outbox, o.snapshots
        local: list[_Opener[Sink]] = []
        if o.sqlite.enabled:
            local.append(_Opener("sqlite", lambda: SqliteSink(o.sqlite.path)))
        if j.enabled:
            local.append(_Opener("jsonl", lambda: JsonlSink(j.path, max_mb=j.max_mb, keep=j.keep)))
        network: list[Sink] = []
        if o.mqtt.enabled:
            m = o.mqtt
            network.append(
                MqttSink(
                    m.host,
                    m.port,
                    client_id=m.client_id,
                    username=m.username,
                    password=m.password,
                    tls=m.tls,
                    tls_ca_file=m.tls_ca_file,
                    topic_prefix=m.topic_prefix,
                    keepalive_s=m.keepalive_s,
                    publish_timeout_s=m.publish_timeout_s,
                    reconnect_max_s=m.reconnect_max_s,
                    discovery_prefix=m.discovery_prefix if m.homeassistant else None,
                    node_id=m.node_id,
                    cameras=[c.name for c in config.cameras if c.enabled],
                )
            )
        if o.webhook.enabled:
            w = o.webhook
            network.append(WebhookSink(w.url, headers=w.headers, timeout_s=w.timeout_s))
        outbox = None
        if network:
            retry = Retry(box.retry_initial_s, box.retry_max_s)
            outbox = _Opener(
                "outbox", lambda: Outbox(box.path, network, max_rows=box.max_rows, retry=retry)
            )
        store = None
        if snaps.enabled:
            store = _Opener(
                "snapshots", lambda: SnapshotStore(snaps.path, snaps.quota_mb, snaps.jpeg_quality)
            )
        outputs = cls(
            local, network, outbox, store, backlog_max=o.backlog_max, retry_s=o.backlog_retry_s,
            storage=config.storage,
        )  # fmt: skip
        outputs._open_all()
        return outputs

    def _open_all(self) -> None:
        openers: list[_Opener[Any]] = [*self._local]
        openers += [self._outbox] if self._outbox else []
        openers += [self._snapshots] if self._snapshots else []
        names = []
        for opener in openers:
            try:
                opener.get()
            except (SinkError, OSError, ValueError) as exc:
                log.error(
                    "output_failed", output=opener.name, reason=str(exc),
                    action="events kept in memory; opened again until it works",
                )  # fmt: skip
                self._snapshots_failing |= opener is self._snapshots
                for out in self._outputs:  # said once: not again at its first write
                    out.failing |= out.opener is opener
                continue
            if opener is self._outbox:
                names += self.queued
            else:
                names.append(opener.name)
        log.info("outputs_opened", outputs=",".join(names) or "none")

    def announce(self, cameras: list[str]) -> None:
        """Tell the outputs that care (MQTT discovery) the configured cameras."""
        for sink in self._network:
            if isinstance(sink, MqttSink):
                sink.announce(cameras)

    def emit(self, event: PlateEvent, snapshot: Snapshot | None = None) -> Record:
        record = event_to_dict(event, new_event_id())
        if self._snapshots is not None and snapshot is not None:
            self._save_snapshots(record, event, snapshot)
        for out in self._outputs:
            if out.backlog:
                self._queue_behind(out, record)
            else:
                self._write(out, record)
        self.retry()
        self.written += 1
        return record

    def retry(self, now: float | None = None) -> None:
        """Write what waits in the backlogs, in order (at most every `retry_s`
        while an output keeps failing). The daemon calls it on its tick."""
        waiting = [o for o in self._outputs if o.backlog]
        if not waiting:
            return
        now = time.monotonic() if now is None else now
        if now < self._next_retry:
            return
        self._next_retry = now + self.retry_s
        for out in waiting:
            replayed = 0
            while out.backlog and self._write(out, out.backlog[0], queued=True):
                out.backlog.popleft()
                replayed += 1
            if not out.backlog and out.failing:
                out.failing = False
                log.info("output_recovered", output=out.name, replayed=replayed,
                         dropped=out.dropped)  # fmt: skip

    def prune(self, now: float | None = None, wall: float | None = None) -> int:
        """Apply `storage` (at most every `prune_interval_s`): events past
        `retention_days` or beyond `max_events` leave the store, with their
        snapshots, and their undelivered copies leave the outbox. The daemon calls
        it on its tick; how many events were deleted."""
        now = time.monotonic() if now is None else now
        st = self.storage
        if now < self._next_prune or not (st.retention_days or st.max_events):
            return 0
        self._next_prune = now + st.prune_interval_s
        wall = time.time() if wall is None else wall
        before = wall - st.retention_days * 86400 if st.retention_days else None
        opener = next((o for o in self._local if o.name == "sqlite"), None)
        try:
            store = opener.get() if opener is not None else None
            pruned = Pruned(0, [])
            if isinstance(store, SqliteSink):
                pruned = store.prune(before, st.max_events, st.prune_batch)
            outbox = self.outbox.prune(before) if self.outbox and before is not None else 0
        except (SinkError, OSError) as exc:
            log.warning("store_not_pruned", reason=str(exc), action="tried again later")
            return 0
        images = 0
        if pruned.snapshots and self._snapshots is not None and self._snapshots.obj is not None:
            images = self._snapshots.obj.remove(pruned.snapshots)
        if pruned.events or outbox:
            log.info("store_pruned", events=pruned.events, snapshots=images, outbox=outbox,
                     retention_days=st.retention_days, max_events=st.max_events)  # fmt: skip
        self.pruned += pruned.events
        return pruned.events

    def pending(self) -> dict[str, int]:
        """Events waiting in the outbox per queued output (MQTT, webhook); an outbox
        closed (the final status at stop) or unreadable counts none."""
        out: dict[str, int] = {}
        outbox = self.outbox
        if outbox is None:
            return out
        for name in self.queued:
            with contextlib.suppress(SinkError):
                out[name] = outbox.pending(name)
        return out

    def backlog(self) -> dict[str, int]:
        """Records waiting per output that has any."""
        return {o.name: len(o.backlog) for o in self._outputs if o.backlog}

    def _write(self, out: _Output, record: Record, queued: bool = False) -> bool:
        try:
            out.write(record)
        except (SinkError, OSError) as exc:
            if not queued:
                self._queue_behind(out, record)
            if not out.failing:
                out.failing = True
                log.error(
                    "output_failed", output=out.name, reason=str(exc),
                    action="events kept in memory, written when it recovers",
                )  # fmt: skip
            return False
        if out.failing and not queued:  # nothing was waiting: recovered at once
            out.failing = False
            log.info("output_recovered", output=out.name, replayed=0, dropped=out.dropped)
        return True

    def _queue_behind(self, out: _Output, record: Record) -> None:
        out.backlog.append(record)
        if len(out.backlog) > self.backlog_max:
            out.backlog.popleft()
            out.dropped += 1
            if out.dropped == 1 or out.dropped % 1000 == 0:
                log.warning(
                    "output_backlog_dropped", output=out.name, dropped=out.dropped,
                    backlog_max=self.backlog_max,
                )  # fmt: skip

    def _save_snapshots(self, record: Record, event: PlateEvent, snapshot: Snapshot) -> None:
        assert self._snapshots is not None
        try:
            plate_box, vehicle_box = snapshot.boxes()
            record["snapshots"] = self._snapshots.get().save(
                record["id"], event.camera, snapshot.image, plate_box, vehicle_box
            )
        except (SinkError, OSError) as exc:
            if not self._snapshots_failing:
                self._snapshots_failing = True
                log.error("output_failed", output="snapshots", reason=str(exc),
                          action="events go out without snapshots")  # fmt: skip
            return
        if self._snapshots_failing:
            self._snapshots_failing = False
            log.info("output_recovered", output="snapshots")

    def close(self, timeout: float = 5.0) -> None:
        self._next_retry = 0.0
        self.retry()
        for name, n in self.backlog().items():
            log.error("output_backlog_lost", output=name, events=n,
                      reason="still failing at stop")  # fmt: skip
        if self.outbox is not None:
            self.outbox.close(timeout)  # it owns the network sinks
        else:
            for net in self._network:
                net.close()
        for opener in self._local:
            if opener.obj is None:
                continue
            try:
                opener.obj.close()
            except (SinkError, OSError) as exc:
                log.warning("output_close_failed", output=opener.name, reason=str(exc))


def _queue(outbox: _Opener[Outbox], name: str) -> Callable[[Record], None]:
    return lambda record: outbox.get().put(name, record)


def _write_to(opener: _Opener[Sink]) -> Callable[[Record], None]:
    return lambda record: opener.get().write(record)
