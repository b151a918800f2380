"""The one interface every output implements, and the JSON record they all receive."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from alprd.pipeline.types import PlateEvent

#: The JSON-ready form of one event: what every sink writes, as produced by `event_to_dict`.
Record = dict[str, Any]


class SinkError(Exception):
    """An output could not take a record (down, refused, full disk). The outbox retries."""


class Sink(Protocol):
    """An output. `write` returns only once the record is stored or delivered."""

    name: str

    def write(self, record: Record) -> None:
        """Store or deliver one record; raise `SinkError` when that failed."""
        ...

    def close(self) -> None: ...


def new_event_id() -> str:
    """A fresh, unique event id (UUID4, 36 characters)."""
    return str(uuid.uuid4())


def iso_utc(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds: ``2024-05-01T12:00:00.123Z``."""
    stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def parse_iso_utc(text: str) -> float:
    """The inverse of `iso_utc` (any ISO 8601 with an offset or 'Z'); epoch seconds."""
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return stamp.timestamp()


def event_to_dict(event: PlateEvent, event_id: str) -> Record:
    """The JSON record of one event (times are epoch seconds in `event`)."""
    return {
        "id": event_id,
        **event.fields(),
        "first_seen": iso_utc(event.first_seen),
        "last_seen": iso_utc(event.last_seen),
        "snapshots": [],
    }
