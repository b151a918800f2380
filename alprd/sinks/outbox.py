"""A durable outbox for the network sinks: nothing acknowledged is lost.

`Outbox.put` returns once the record is committed to SQLite (WAL, ``synchronous=FULL``):
that is the acknowledgement point. One delivery thread per sink then sends that
sink's rows oldest first, deletes a row only after its sink took it, and retries a
failing sink with exponential backoff (`Retry`). Rows still pending at exit are sent
after the next start. A record a sink fails on with anything but `SinkError` (a bug,
a malformed record) is logged (``outbox_rejected``) and removed, so it cannot block
the rows behind it. Each sink keeps at most `max_rows` rows: beyond that the oldest
are dropped and counted (``outbox_dropped sink=mqtt count=1`` at warning).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alprd.log import get_logger, redact
from alprd.sinks.base import Record, Sink, SinkError, iso_utc
from alprd.sinks.sqlite import migrate, open_db, transaction

log = get_logger("alprd.sinks")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            sink TEXT NOT NULL,
            created REAL NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX outbox_sink_seq ON outbox (sink, seq)",
    ),
)


@dataclass(frozen=True)
class Retry:
    """Backoff while a sink fails: `initial_s`, doubling, at most `max_s`."""

    initial_s: float = 1.0
    max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_s <= 0:
            raise ValueError(f"retry initial_s must be > 0; got {self.initial_s}")
        if self.max_s < self.initial_s:
            raise ValueError(f"retry max_s must be >= initial_s; got {self.max_s}")

    def next(self, delay: float | None) -> float:
        return self.initial_s if delay is None else min(delay * 2, self.max_s)


class Outbox:
    """Durable per-sink queues at `path`, delivered by one thread per sink in `sinks`.

    The outbox owns the sinks it is given: `close` closes them.
    """

    def __init__(
        self,
        path: Path,
        sinks: Sequence[Sink],
        *,
        max_rows: int = 10_000,
        retry: Retry | None = None,
        idle_poll_s: float = 1.0,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1; got {max_rows}")
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique; got {names}")
        self.path = path
        self.max_rows = max_rows
        self.retry = retry or Retry()
        self._idle_poll_s = idle_poll_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        try:
            self._conn = open_db(path)
            migrate(self._conn, MIGRATIONS, path)
        except Exception as exc:
            raise SinkError(f"{path}: cannot open the outbox: {exc}") from exc
        for name, rows in self._conn.execute("SELECT sink, count(*) FROM outbox GROUP BY sink"):
            if name in names:
                log.info("outbox_pending", sink=name, rows=rows)
            else:
                log.warning("outbox_pending_unknown_sink", sink=name, rows=rows)
        self._workers = [_Worker(self, sink) for sink in sinks]
        for w in self._workers:
            w.thread.start()

    @property
    def sinks(self) -> list[Sink]:
        return [w.sink for w in self._workers]

    # ------------------------------------------------------------------ producer side

    def put(self, sink_name: str, record: Record) -> None:
        """Queue `record` for `sink_name`; returns once it is committed (durable)."""
        worker = next((w for w in self._workers if w.sink.name == sink_name), None)
        if worker is None:
            raise ValueError(f"no sink named {sink_name!r} in this outbox")
        payload = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            if self._closed:
                raise SinkError(f"{self.path}: outbox closed")
            try:
                with transaction(self._conn):
                    self._conn.execute(
                        "INSERT INTO outbox (sink, created, payload) VALUES (?, ?, ?)",
                        (sink_name, time.time(), payload),
                    )
                    dropped = self._conn.execute(
                        "DELETE FROM outbox WHERE sink = ? AND seq <= (SELECT seq FROM outbox"
                        " WHERE sink = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                        (sink_name, sink_name, self.max_rows),
                    ).rowcount
            except sqlite3.Error as exc:
                raise SinkError(f"{self.path}: cannot queue for {sink_name}: {exc}") from exc
        if dropped:
            log.warning("outbox_dropped", sink=sink_name, count=dropped, max_rows=self.max_rows)
        worker.wake.set()

    def pending(self, sink_name: str) -> int:
        """Rows queued for `sink_name` and not yet delivered."""
        with self._lock:
            if self._closed:
                raise SinkError(f"{self.path}: outbox closed")
            row = self._conn.execute(
                "SELECT count(*) FROM outbox WHERE sink = ?", (sink_name,)
            ).fetchone()
        return int(row[0])

    def prune(self, before: float) -> int:
        """Drop the rows of events first seen before `before` (epoch seconds):
        events past the store's retention are not delivered late either."""
        with self._lock:
            if self._closed:
                return 0
            try:
                return int(self._conn.execute(
                    "DELETE FROM outbox WHERE json_extract(payload, '$.first_seen') < ?",
                    (iso_utc(before),)).rowcount)  # fmt: skip
            except sqlite3.Error as exc:
                raise SinkError(f"{self.path}: cannot delete old rows: {exc}") from exc

    # ------------------------------------------------------------------ delivery side

    def _oldest(self, sink_name: str) -> tuple[int, str] | None:
        with self._lock:
            if self._closed:
                return None
            row = self._conn.execute(
                "SELECT seq, payload FROM outbox WHERE sink = ? ORDER BY seq LIMIT 1",
                (sink_name,),
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def _delivered(self, seq: int) -> None:
        with self._lock:
            if not self._closed:
                self._conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    # ------------------------------------------------------------------ stop

    def close(self, timeout: float = 5.0) -> None:
        """Stop the delivery threads (a write in progress may finish within `timeout`),
        close the sinks and the database. Undelivered rows stay for the next start."""
        self._stop.set()
        for w in self._workers:
            w.wake.set()
        deadline = time.monotonic() + timeout
        for w in self._workers:
            w.thread.join(max(0.0, deadline - time.monotonic()))
            if w.thread.is_alive():
                log.warning("outbox_stop_timeout", sink=w.sink.name, timeout_s=timeout)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
        for w in self._workers:
            if not w.thread.is_alive():
                w.sink.close()


class _Worker:
    """Delivers one sink's rows in order; logs once per change of state."""

    def __init__(self, outbox: Outbox, sink: Sink) -> None:
        self.outbox = outbox
        self.sink = sink
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"outbox-{sink.name}", daemon=True)

    def _run(self) -> None:
        stop = self.outbox._stop
        delay: float | None = None  # None: the sink is healthy
        failing_since = 0.0
        sent = 0  # delivered since the queue was last empty
        while not stop.is_set():
            self.wake.clear()
            try:
                row = self.outbox._oldest(self.sink.name)
            except sqlite3.Error as exc:
                log.error("outbox_read_failed", sink=self.sink.name, reason=str(exc))
                stop.wait(self.outbox.retry.max_s)
                continue
            if row is None:
                if sent:
                    log.debug("sink_delivered", sink=self.sink.name, count=sent)
                    sent = 0
                self.wake.wait(self.outbox._idle_poll_s)
                continue
            seq, payload = row
            try:
                self.sink.write(json.loads(payload))
            except SinkError as exc:
                reason = redact(str(exc))
                if delay is None:
                    failing_since = time.monotonic()
                    log.warning("sink_unavailable", sink=self.sink.name, reason=reason)
                else:
                    log.debug("sink_retry", sink=self.sink.name, reason=reason, retry_s=delay)
                delay = self.outbox.retry.next(delay)
                stop.wait(delay)
                continue
            except Exception as exc:  # a bug or a record the sink cannot take: never retried
                log.error("outbox_rejected", sink=self.sink.name, seq=seq, reason=redact(repr(exc)))
                self._remove(seq)
                continue
            self._remove(seq)
            sent += 1
            if delay is not None:
                log.info(
                    "sink_recovered",
                    sink=self.sink.name,
                    down_s=round(time.monotonic() - failing_since, 1),
                )
                delay = None

    def _remove(self, seq: int) -> None:
        try:
            self.outbox._delivered(seq)
        except sqlite3.Error as exc:  # sent again after a restart: at least once, never lost
            log.error("outbox_delete_failed", sink=self.sink.name, reason=str(exc))
