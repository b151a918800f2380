"""``[outputs]``: where events go (SQLite, JSONL, MQTT, webhook, snapshots) and the
outbox that holds them for the network ones."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, model_validator

from alprd.settings.base import Section, TimeZone

# --------------------------------------------------------------------------- outputs


class SqliteOutput(Section):
    enabled: bool = True
    path: Path = Path("reads.db")


class JsonlOutput(Section):
    enabled: bool = False
    path: Path = Path("reads.jsonl")
    max_mb: float = Field(100.0, gt=0)
    keep: int = Field(5, ge=0)


class MqttOutput(Section):
    enabled: bool = False
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = ""
    username: str = ""
    password: str = ""
    tls: bool = False
    tls_ca_file: Path | None = None
    topic_prefix: str = Field("alprd", pattern=r"^[^#+\s]+$")
    keepalive_s: int = Field(30, ge=5)
    publish_timeout_s: float = Field(10.0, gt=0)
    reconnect_max_s: int = Field(30, ge=1)
    homeassistant: bool = False
    discovery_prefix: str = Field("homeassistant", pattern=r"^[^#+\s]+$")
    node_id: str = Field("", pattern=r"^[A-Za-z0-9_-]*$")


class WebhookOutput(Section):
    enabled: bool = False
    url: str = ""
    timeout_s: float = Field(5.0, gt=0, le=300)
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _url_when_enabled(self) -> WebhookOutput:
        if self.enabled and not re.match(r"^https?://", self.url):
            raise ValueError("url: must be an http:// or https:// URL when enabled = true")
        return self


class OutboxConfig(Section):
    path: Path = Path("outbox.db")
    max_rows: int = Field(10_000, ge=1)
    retry_initial_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)


class SnapshotsOutput(Section):
    enabled: bool = True
    path: Path = Path("snapshots")
    quota_mb: float = Field(500.0, gt=0)
    jpeg_quality: int = Field(90, ge=10, le=100)


class OutputsConfig(Section):
    backlog_max: int = Field(10_000, ge=1)
    backlog_retry_s: float = Field(2.0, gt=0)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    snapshots: SnapshotsOutput = Field(default_factory=SnapshotsOutput)
    sqlite: SqliteOutput = Field(default_factory=SqliteOutput)
    jsonl: JsonlOutput = Field(default_factory=JsonlOutput)
    mqtt: MqttOutput = Field(default_factory=MqttOutput)
    webhook: WebhookOutput = Field(default_factory=WebhookOutput)


class ListsConfig(Section):
    """Plate lists (`alprd lists`): which plates may pass and which may not."""

    #: the lists' file (SQLite), written by `alprd lists`, read by the daemon;
    #: relative paths are under paths.state_dir
    path: Path = Path("lists.db")
    #: how often the daemon looks whether the lists changed, in seconds
    refresh_s: float = Field(1.0, gt=0, le=3600)
    #: the time zone of the lists' weekdays and hours (IANA name); "" for the system's
    time_zone: TimeZone = ""
    #: what a swap of two characters a camera confuses (0/O, 1/I, 8/B ...) counts
    #: in an entry's distance (a different character counts 1)
    confusion_cost: float = Field(0.5, ge=0.0, le=1.0)


class PrivacyConfig(Section):
    """What the daemon keeps of plates it does not know (`alprd.sinks.privacy`)."""

    #: store, send and log a keyed hash ("#" and 16 hex digits) instead of the text
    #: of every plate not on the known list (`plates.known`); an exact search (web,
    #: `alprd reads --plate`) still finds it, a pattern or fuzzy search does not
    hash_plates: bool = False
    #: the hash key, made by the daemon at its first start with hashing on (random,
    #: readable by its user only); relative paths are under paths.state_dir
    key_file: Path = Path("plate-key")


class StorageConfig(Section):
    """How long events are kept: the store, their snapshots and what waits in the
    outbox (`alprd.sinks.outputs.Outputs.prune`)."""

    #: events first seen longer ago than this are deleted, with their snapshots and
    #: undelivered copies; 0: kept until max_events
    retention_days: float = Field(0.0, ge=0)
    #: the most events the store keeps, the oldest deleted first; 0: no limit
    max_events: int = Field(1_000_000, ge=0)
    #: how often the limits are applied, in seconds (each time at most
    #: prune_batch events are deleted: the store is never locked for long)
    prune_interval_s: float = Field(60.0, gt=0)
    prune_batch: int = Field(5000, ge=1, le=1_000_000)
