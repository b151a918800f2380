"""The stored events as the web process reads them: the daemon's SQLite store
(`alprd.sinks.sqlite`), opened read-only (WAL: reading never blocks the daemon's
writes), searched newest first a page at a time."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from alprd import plates
from alprd.sinks.base import Record
from alprd.sinks.sqlite import SCHEMA_VERSION, schema_version

#: A plate pattern: letters, digits and the wildcards ``*`` (any run) and ``?`` (one).
PATTERN = re.compile(r"[A-Z0-9*?]{1,16}")
IMAGE_KINDS = ("plate", "vehicle")


class StoreError(Exception):
    """The store cannot be read (missing, damaged, newer than this alprd)."""


class BadQuery(ValueError):
    """A search that cannot be run: the message says which parameter and why."""


@dataclass(frozen=True)
class Search:
    """One search: every field narrows it; none set: every event."""

    plate: str | None = None  # exact, or a pattern with * and ?
    fuzzy: int = 0  # with an exact plate: up to this many characters differ
    camera: str | None = None
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None  # epoch seconds, exclusive
    known: str | None = None  # the known-plates label
    vehicle: str | None = None  # the vehicle class
    limit: int = 50
    after: str | None = None  # the cursor of the page before (`Page.next`)
    #: the exact plate's keyed hash (`privacy.hash_plates`): stored either way
    hashed: str | None = None


@dataclass(frozen=True)
class Page:
    events: list[Record]
    next: str | None  # pass as `Search.after` for the next (older) page; None: the last


@dataclass(frozen=True)
class CameraSummary:
    name: str
    events: int
    last_seen: float  # epoch seconds


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float, zone: tzinfo = UTC) -> float:
    """`30m`, `2h`, `7d` ago (s, m, h, d, w), or an ISO 8601 date/time, in `zone`
    unless it says; epoch seconds. BadQuery (a ValueError) otherwise."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadQuery(
            f"{text[:40]!r}: expected 30m, 2h, 7d or a date like 2026-11-27T08:00"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=zone)).timestamp()


def normal_plate(text: str) -> str:
    """A plate or pattern as stored: upper case, no spaces or dashes."""
    return "".join(c for c in text.upper() if c.isalnum() or c in "*?")


def _cursor(first_seen: float, rowid: int) -> str:
    return f"{first_seen!r}_{rowid}"


def _parse_cursor(text: str) -> tuple[float, int]:
    try:
        when, rowid = text.split("_")
        parsed = float(when), int(rowid)
    except ValueError:
        raise BadQuery(f"after: not a cursor this store gave: {text[:40]!r}") from None
    if not math.isfinite(parsed[0]):
        raise BadQuery(f"after: not a cursor this store gave: {text[:40]!r}")
    return parsed


#: the store's schema version from which plates are indexed by trigram
TRIGRAM_SCHEMA = 3


def pieces(plate: str, edits: int) -> list[str]:
    """`plate` cut into ``edits + 1`` runs as even as can be: `edits` edits leave
    at least one of them whole, so a plate within `edits` of `plate` holds it."""
    n, k = len(plate), edits + 1
    return [plate[i * n // k : (i + 1) * n // k] for i in range(k)]


def where(search: Search, indexed: bool = True) -> tuple[str, list[Any]]:
    """The WHERE clause (without the keyword; "1" for none) and its arguments.
    `indexed`: the store has the trigram index (schema 3): a pattern with three
    letters or digits in a row, and a fuzzy search of a plate long enough to cut
    into one run of three or more per edit and one more, read only the rows the
    index names (those holding one of the runs)."""
    clauses: list[str] = []
    args: list[Any] = []
    if search.plate:
        plate = normal_plate(search.plate)
        if not PATTERN.fullmatch(plate):
            raise BadQuery("plate: letters, digits, * and ?, at most 16")
        if "*" in plate or "?" in plate:
            if search.fuzzy:
                raise BadQuery("fuzzy: only with a plate without * or ?")
            if indexed and re.search(r"[A-Z0-9]{3}", plate):
                clauses.append("rowid IN (SELECT rowid FROM reads_trigram WHERE plate GLOB ?)")
                args.append(plate)
            clauses.append("plate GLOB ?")
            args.append(plate)
        elif search.fuzzy:
            if indexed and len(plate) >= 3 * (search.fuzzy + 1):
                grams = " OR ".join(f'"{g}"' for g in pieces(plate, search.fuzzy))
                clauses.append("rowid IN (SELECT rowid FROM reads_trigram WHERE reads_trigram "
                               "MATCH ?)")  # fmt: skip
                args.append(grams)
            clauses.append("length(plate) BETWEEN ? AND ? AND edit_distance(plate, ?) <= ?")
            args += [len(plate) - search.fuzzy, len(plate) + search.fuzzy, plate, search.fuzzy]
        elif search.hashed:
            clauses.append("plate IN (?, ?)")
            args += [plate, search.hashed]
        else:
            clauses.append("plate = ?")
            args.append(plate)
    for column, value in (("camera", search.camera), ("known_label", search.known)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if search.vehicle is not None:
        clauses.append("json_extract(payload, '$.vehicle_class') = ?")
        args.append(search.vehicle)
    if search.since is not None:
        clauses.append("first_seen >= ?")
        args.append(search.since)
    if search.until is not None:
        clauses.append("first_seen < ?")
        args.append(search.until)
    if search.after is not None:
        when, rowid = _parse_cursor(search.after)
        clauses.append("(first_seen < ? OR (first_seen = ? AND rowid < ?))")
        args += [when, when, rowid]
    return " AND ".join(clauses) or "1", args


class EventStore:
    """Read-only queries on the daemon's store; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise StoreError(f"{path}: no event store yet (the daemon writes it: outputs.sqlite)")
        self._lock = threading.Lock()
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        """Read-only. While the daemon runs its WAL files exist and a read-only
        connection reads through them, even from a read-only folder; with the
        daemon stopped (no WAL files, and none can be made in a read-only folder)
        the file is read as immutable until the daemon writes again (`_query`)."""
        uri = self.path.as_uri()
        try:
            try:
                conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False,
                                       timeout=5.0)  # fmt: skip
                version = schema_version_ro(conn)
                self._immutable = False
            except sqlite3.OperationalError:
                conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
                version = schema_version_ro(conn)
                self._immutable = True
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the event store: {exc}") from exc
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this alprd reads "
                f"({SCHEMA_VERSION}); upgrade alprd"
            )
        conn.create_function("edit_distance", 2, plates.levenshtein, deterministic=True)
        self._version = version
        return conn

    def search(self, search: Search) -> Page:
        clause, args = where(search, self._version >= TRIGRAM_SCHEMA)
        sql = (
            f"SELECT rowid, first_seen, payload, format FROM reads WHERE {clause} "
            "ORDER BY first_seen DESC, rowid DESC LIMIT ?"
        )
        rows = self._query(sql, [*args, search.limit + 1])
        events = [_record(payload, fmt) for _, _, payload, fmt in rows[: search.limit]]
        more = len(rows) > search.limit
        last = rows[search.limit - 1] if more else None
        return Page(events, _cursor(last[1], last[0]) if last else None)

    def event(self, event_id: str) -> Record | None:
        rows = self._query("SELECT payload, format FROM reads WHERE id = ?", [event_id])
        return _record(*rows[0]) if rows else None

    def cameras(self) -> list[CameraSummary]:
        rows = self._query(
            "SELECT camera, COUNT(*), MAX(first_seen) FROM reads GROUP BY camera ORDER BY camera",
            [],
        )
        return [CameraSummary(name, n, last) for name, n, last in rows]

    def image(self, event_id: str, kind: str, root: Path) -> Path | None:
        """The event's `kind` snapshot, only if it lies under `root` (the snapshot
        folder) and exists: a stored path is never followed elsewhere."""
        record = self.event(event_id)
        if record is None or kind not in IMAGE_KINDS:
            return None
        base = root.resolve()
        for stored in record.get("snapshots") or []:
            path = Path(str(stored)).resolve()
            if path.name == f"{event_id}-{kind}.jpg" and path.is_relative_to(base):
                return path if path.is_file() else None
        return None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _query(self, sql: str, args: list[Any]) -> list[Any]:
        try:
            with self._lock:
                if self._immutable and self.path.with_name(self.path.name + "-wal").exists():
                    self._conn.close()  # the daemon writes again: read through its WAL
                    self._conn = self._connect()
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc


def schema_version_ro(conn: sqlite3.Connection) -> int:
    """`schema_version` without creating its table (the file is opened read-only)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    return schema_version(conn) if exists else 0


def _record(payload: str, fmt: str) -> Record:
    record: Record = json.loads(payload)
    record.setdefault("format", fmt)  # stored before events had one
    return record
