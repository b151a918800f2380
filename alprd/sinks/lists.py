"""The plate lists on disk (``lists.path`` under the state directory, SQLite in
WAL mode) and the daemon's live view of them.

`ListStore` is what `alprd lists` writes and the daemon reads; `LiveLists` holds
the daemon's current `PlateLists` (the stored lists and the config's
``[plates.known]`` as the allow list ``known``), reads the store again when
another process changed it (SQLite's ``data_version``, asked every
``lists.refresh_s``), and gives each event its decision.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from alprd.log import get_logger
from alprd.pipeline.lists import (
    Decision,
    Kind,
    ListEntry,
    PlateLists,
    Window,
    days_text,
    hours_text,
    parse_days,
    parse_hours,
)
from alprd.pipeline.types import PlateEvent
from alprd.settings import Config
from alprd.settings.base import zone_of
from alprd.settings.outputs import ListsConfig
from alprd.sinks.base import SinkError
from alprd.sinks.sqlite import migrate, open_db, transaction

log = get_logger("alprd.lists")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE lists (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('allow', 'deny'))
        )""",
        """CREATE TABLE entries (
            list TEXT NOT NULL REFERENCES lists (name) ON DELETE CASCADE,
            plate TEXT NOT NULL,
            label TEXT NOT NULL DEFAULT '',
            valid_from REAL,
            valid_until REAL,
            days TEXT NOT NULL DEFAULT '',
            hours TEXT NOT NULL DEFAULT '',
            max_distance REAL NOT NULL DEFAULT 0,
            added REAL NOT NULL,
            PRIMARY KEY (list, plate)
        )""",
    ),
)
#: The columns of `alprd lists import` / `export` (plate first; the rest optional).
CSV_COLUMNS = ("plate", "label", "from", "until", "days", "hours", "distance")
SEED_LIST = "known"  # the config's [plates.known]


#: every entry with its list's kind (`_entries` makes them `ListEntry`s)
ENTRIES_SQL = (
    "SELECT e.list, l.kind, e.plate, e.label, e.valid_from, e.valid_until, e.days, e.hours, "
    "e.max_distance FROM entries e JOIN lists l ON l.name = e.list"
)


def _entries(rows: Iterable[tuple[Any, ...]]) -> list[ListEntry]:
    out = []
    for lst, kind, plate, label, vf, vu, days, hours, dist in rows:
        window = Window(vf, vu, parse_days(days), parse_hours(hours))
        out.append(ListEntry(lst, kind, plate, label, window, dist))
    return out


def normal(plate: str) -> str:
    """A plate as the daemon reads it: upper case, letters and digits only."""
    return "".join(c for c in plate.upper() if c.isalnum())


class ListStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = open_db(path)
            self._conn.execute("PRAGMA foreign_keys = ON")
            migrate(self._conn, MIGRATIONS, path)
        except (sqlite3.Error, OSError) as exc:
            raise SinkError(f"{path}: cannot open the plate lists: {exc}") from exc

    def version(self) -> int:
        """Changes whenever another connection commits to the file."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def lists(self) -> list[tuple[str, Kind, int]]:
        """(name, kind, number of entries) of every list."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, kind, (SELECT COUNT(*) FROM entries WHERE list = name) "
                "FROM lists ORDER BY name"
            ).fetchall()
        return [(n, k, c) for n, k, c in rows]

    def entries(self, name: str | None = None) -> list[ListEntry]:
        sql, args = ENTRIES_SQL, []
        if name is not None:
            sql += " WHERE e.list = ?"
            args.append(name)
        with self._lock:
            return _entries(self._conn.execute(sql + " ORDER BY e.list, e.plate", args))

    def add(self, name: str, entries: Iterable[ListEntry], kind: Kind | None = None) -> int:
        """Add (or replace, by plate) `entries` to list `name`, made with `kind`
        (default allow) if new; one transaction. How many were written."""
        rows = [
            (name, e.plate, e.label, e.window.valid_from, e.window.valid_until,
             days_text(e.window.days), hours_text(e.window.hours), e.max_distance, time.time())
            for e in entries
        ]  # fmt: skip
        with self._lock:
            have = self._conn.execute("SELECT kind FROM lists WHERE name = ?", (name,)).fetchone()
            if have and kind and have[0] != kind:
                raise ValueError(f"list {name!r} is a {have[0]} list, not {kind}")
            with transaction(self._conn):
                if not have:
                    self._conn.execute("INSERT INTO lists (name, kind) VALUES (?, ?)",
                                       (name, kind or "allow"))  # fmt: skip
                self._conn.executemany(
                    "INSERT OR REPLACE INTO entries (list, plate, label, valid_from, valid_until,"
                    " days, hours, max_distance, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        return len(rows)

    def remove(self, name: str, plate: str | None = None) -> int:
        """Remove `plate` from list `name`, or the whole list; how many entries went."""
        with self._lock:
            if plate is not None:
                cur = self._conn.execute("DELETE FROM entries WHERE list = ? AND plate = ?",
                                         (name, plate))  # fmt: skip
                return cur.rowcount
            n = self._conn.execute("SELECT COUNT(*) FROM entries WHERE list = ?", (name,))
            count = int(n.fetchone()[0])
            self._conn.execute("DELETE FROM lists WHERE name = ?", (name,))
            return count

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def hand_to_owner(self) -> None:
        """As root (`sudo alprd lists ...`): the file and its WAL files to the
        owner of their folder (the service's user), who must write them too."""
        if os.geteuid() != 0:
            return
        folder = self.path.parent.stat()
        for f in (self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm"))):
            with contextlib.suppress(FileNotFoundError):
                os.chown(f, folder.st_uid, folder.st_gid)


def read_lists(path: Path) -> list[tuple[str, Kind, list[ListEntry]]]:
    """Every list (name, kind, entries) of the file at `path`, read-only (a reader
    that may not write the state directory: `alprd web`); none where there is no
    file yet."""
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        raise SinkError(f"{path}: cannot read the plate lists: {exc}") from exc
    try:
        kinds = conn.execute("SELECT name, kind FROM lists ORDER BY name").fetchall()
        entries = _entries(conn.execute(ENTRIES_SQL + " ORDER BY e.list, e.plate"))
    except sqlite3.Error as exc:
        raise SinkError(f"{path}: cannot read the plate lists: {exc}") from exc
    finally:
        conn.close()
    return [(name, kind, [e for e in entries if e.list == name]) for name, kind in kinds]


def read_csv(text: str, zone: tzinfo) -> list[ListEntry]:
    """Entries from CSV with a header row naming `CSV_COLUMNS` (plate required):
    from/until as ISO dates or times in `zone`, days ``mon-fri``, hours
    ``07:00-19:00``, distance a number. ValueError names the line and column."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "plate" not in reader.fieldnames:
        raise ValueError(
            f"the first line must name the columns, plate first: {','.join(CSV_COLUMNS)}"
        )
    unknown = set(reader.fieldnames) - set(CSV_COLUMNS)
    if unknown:
        raise ValueError(
            f"unknown columns {', '.join(sorted(unknown))}; known: {', '.join(CSV_COLUMNS)}"
        )
    out = []
    for line, row in enumerate(reader, start=2):
        try:
            out.append(entry(row.get("plate") or "", row.get("label") or "", row.get("from") or "",
                             row.get("until") or "", row.get("days") or "", row.get("hours") or "",
                             row.get("distance") or "0", zone))  # fmt: skip
        except ValueError as exc:
            raise ValueError(f"line {line}: {exc}") from None
    return out


def entry(
    plate: str, label: str, valid_from: str, valid_until: str, days: str, hours: str,
    distance: str, zone: tzinfo, name: str = "", kind: Kind = "allow",
) -> ListEntry:  # fmt: skip
    """One entry from its text fields (CLI arguments or a CSV row)."""
    p = normal(plate)
    if not 1 <= len(p) <= 16:
        raise ValueError(f"plate: {plate!r} is not a plate (letters and digits, at most 16)")
    try:
        dist = float(distance)
    except ValueError:
        raise ValueError(f"distance: {distance!r} is not a number") from None
    if not 0 <= dist <= 4:
        raise ValueError(f"distance: {dist:g} is not from 0 to 4")
    window = Window(_when(valid_from, zone, "from"), _when(valid_until, zone, "until"),
                    parse_days(days), parse_hours(hours))  # fmt: skip
    if None not in (window.valid_from, window.valid_until) and (
        window.valid_until <= window.valid_from  # type: ignore[operator]
    ):
        raise ValueError("until: not after from")
    return ListEntry(name, kind, p, label.strip(), window, dist)


def _when(text: str, zone: tzinfo, what: str) -> float | None:
    if not text.strip():
        return None
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{what}: {text!r} is not a date or time (2026-12-31, 2026-12-31T18:00)"
        ) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=zone)).timestamp()


def write_csv(entries: Iterable[ListEntry], zone: tzinfo) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for e in entries:
        w.writerow([
            e.plate, e.label, iso_minutes(e.window.valid_from, zone) or "",
            iso_minutes(e.window.valid_until, zone) or "",
            days_text(e.window.days), hours_text(e.window.hours), f"{e.max_distance:g}",
        ])  # fmt: skip
    return out.getvalue()


def iso_minutes(when: float | None, zone: tzinfo) -> str | None:
    """A validity bound as local ISO time to the minute (what `lists export` writes
    and the web API shows); None for no bound."""
    return (
        None if when is None else datetime.fromtimestamp(when, zone).isoformat(timespec="minutes")
    )


class LiveLists:
    """The daemon's lists: what the store holds plus the config's seed, read
    again when the store changed (`refresh`, on the daemon's tick)."""

    def __init__(self, config: ListsConfig, seed: Iterable[ListEntry] = ()) -> None:
        self.config = config
        self.zone = zone_of(config.time_zone)
        self.seed = tuple(seed)
        self.store: ListStore | None = None
        self._version: int | None = None
        self._next = 0.0
        self.current = PlateLists(self.seed, self.zone, config.confusion_cost)
        self.refresh(force=True)

    @classmethod
    def of(cls, config: Config) -> LiveLists:
        """The daemon's lists for `config` (``[lists]`` and ``[plates.known]``)."""
        p = config.plates
        return cls(config.lists, seed_of(p.known, p.known_max_distance))

    def refresh(self, now: float | None = None, force: bool = False) -> bool:
        """Read the store again if another process changed it; whether it did."""
        now = time.monotonic() if now is None else now
        if not force and now < self._next:
            return False
        self._next = now + self.config.refresh_s
        try:
            if self.store is None:
                if not self.config.path.is_file():
                    return False  # no list made yet: the seed alone
                self.store = ListStore(self.config.path)
            version = self.store.version()
            if version == self._version:
                return False
            stored = self.store.entries()
        except (SinkError, sqlite3.Error, OSError, ValueError) as exc:
            log.error("lists_unreadable", path=str(self.config.path), reason=str(exc),
                      action="the lists read before stay in use")  # fmt: skip
            return False
        self._version = version
        self.current = PlateLists([*stored, *self.seed], self.zone, self.config.confusion_cost)
        names = sorted({e.list for e in self.current.entries})
        log.info("lists_loaded", lists=",".join(names) or "none", entries=len(self.current))
        return True

    def apply(self, event: PlateEvent, when: float | None = None) -> PlateEvent:
        """`event` with its decision (none while there are no lists)."""
        if not len(self.current):
            return event
        d: Decision = self.current.decide(event.plate, time.time() if when is None else when)
        e = d.entry
        return replace(
            event, decision=d.verdict, list_name=e.list if e else None,
            list_plate=e.plate if e else None, list_label=(e.label or None) if e else None,
            list_distance=d.distance if e else None,
        )  # fmt: skip

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def seed_of(known: dict[str, str], max_distance: int) -> list[ListEntry]:
    """The config's ``[plates.known]`` as the allow list `SEED_LIST`."""
    return [ListEntry(SEED_LIST, "allow", normal(p), label, Window(), float(max_distance))
            for p, label in known.items()]  # fmt: skip
