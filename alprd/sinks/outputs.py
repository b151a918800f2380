"""The configured outputs, as one object the daemon hands each event to.

Local outputs (SQLite, JSONL) are written at once; network outputs (MQTT, webhook)
go through the durable outbox, so an event is acknowledged once it is committed
there. A failing output is logged once per change of state and never stops the
pipeline or the other outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

from alprd import config as cfgmod
from alprd.log import get_logger
from alprd.pipeline.stream import Snapshot
from alprd.pipeline.types import PlateEvent
from alprd.sinks.base import Record, Sink, SinkError, event_to_dict, new_event_id
from alprd.sinks.jsonl import JsonlSink
from alprd.sinks.mqtt import MqttSink
from alprd.sinks.outbox import Outbox, Retry
from alprd.sinks.snapshots import SnapshotStore
from alprd.sinks.sqlite import SqliteSink
from alprd.sinks.webhook import WebhookSink

log = get_logger("alprd.outputs")
T = TypeVar("T")


class Outputs:
    def __init__(
        self,
        local: list[Sink],
        outbox: Outbox | None,
        queued: list[str],
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.local, self.outbox, self.queued = local, outbox, queued
        self.snapshots = snapshots
        self._failing: set[str] = set()
        self.written = 0

    @classmethod
    def open(cls, config: cfgmod.Config) -> Outputs:
        """Open every enabled output. One that cannot be opened (a read-only or
        full state directory, a bad path) is logged with the reason and left out:
        the pipeline and the other outputs still run."""
        o = config.outputs

        def opened(name: str, make: Callable[[], T]) -> T | None:
            try:
                return make()
            except (SinkError, OSError, ValueError) as exc:
                log.error("output_failed", output=name, reason=str(exc), action="left out")
                return None

        local: list[Sink] = []
        if o.sqlite.enabled and (sq := opened("sqlite", lambda: SqliteSink(o.sqlite.path))):
            local.append(sq)
        j = o.jsonl
        if j.enabled and (
            js := opened("jsonl", lambda: JsonlSink(j.path, max_mb=j.max_mb, keep=j.keep))
        ):
            local.append(js)
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
                )
            )
        if o.webhook.enabled:
            w = o.webhook
            network.append(WebhookSink(w.url, headers=w.headers, timeout_s=w.timeout_s))
        outbox = None
        if network:
            box = o.outbox
            outbox = opened(
                "outbox",
                lambda: Outbox(
                    box.path,
                    network,
                    max_rows=box.max_rows,
                    retry=Retry(box.retry_initial_s, box.retry_max_s),
                ),
            )
            if outbox is None:
                for sink in network:
                    sink.close()
                network = []
        snaps = o.snapshots
        store = None
        if snaps.enabled:
            store = opened(
                "snapshots", lambda: SnapshotStore(snaps.path, snaps.quota_mb, snaps.jpeg_quality)
            )
        names = [s.name for s in local] + [s.name for s in network]
        names += ["snapshots"] if store else []
        log.info("outputs_opened", outputs=",".join(names) or "none")
        return cls(local, outbox, [s.name for s in network], store)

    def emit(self, event: PlateEvent, snapshot: Snapshot | None = None) -> Record:
        record = event_to_dict(event, new_event_id())
        if self.snapshots is not None and snapshot is not None:
            store = self.snapshots

            def save() -> None:
                record["snapshots"] = store.save(
                    record["id"], event.camera, snapshot.image, event.plate_box, event.vehicle_box
                )

            self._guard("snapshots", save)
        for sink in self.local:
            self._guard(sink.name, partial(sink.write, record))
        if self.outbox is not None:
            for name in self.queued:
                self._guard(f"outbox:{name}", partial(self.outbox.put, name, record))
        self.written += 1
        return record

    def _guard(self, name: str, write: Callable[[], None]) -> None:
        try:
            write()
        except (SinkError, OSError) as exc:
            if name not in self._failing:
                self._failing.add(name)
                log.error("output_failed", output=name, reason=str(exc))
            return
        if name in self._failing:
            self._failing.discard(name)
            log.info("output_recovered", output=name)

    def close(self, timeout: float = 5.0) -> None:
        if self.outbox is not None:
            self.outbox.close(timeout)
        for sink in self.local:
            try:
                sink.close()
            except (SinkError, OSError) as exc:
                log.warning("output_close_failed", output=sink.name, reason=str(exc))
