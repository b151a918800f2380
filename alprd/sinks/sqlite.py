"""The embedded store: every event in one SQLite file, queryable by time, plate and camera.

WAL mode (readers never block the writer), ``synchronous=FULL`` (a returned `write`
survives a power cut), and a versioned schema: `MIGRATIONS` holds the steps, each
applied once in its own transaction, and ``schema_version`` records how far a file is.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alprd.log import get_logger
from alprd.sinks.base import Record, SinkError, parse_iso_utc

log = get_logger("alprd.sinks")

#: Schema steps: MIGRATIONS[i] takes a file from version i to version i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE reads (
            id TEXT PRIMARY KEY,
            camera TEXT NOT NULL,
            plate TEXT NOT NULL,
            confidence REAL NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            known_label TEXT,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX reads_plate ON reads (plate)",
        "CREATE INDEX reads_camera ON reads (camera)",
        "CREATE INDEX reads_first_seen ON reads (first_seen)",
    ),
    # 2: the regions whose plate format the plate fits ("" for events stored before)
    ("ALTER TABLE reads ADD COLUMN format TEXT NOT NULL DEFAULT ''",),
    # 3: every run of three characters of each plate, indexed (SQLite FTS5 trigram),
    # kept by triggers: plate searches with wildcards and fuzzy searches read only
    # the rows that can match (`alprd.web.store`)
    (
        "CREATE VIRTUAL TABLE reads_trigram USING fts5(plate, content='reads', "
        "content_rowid='rowid', tokenize='trigram')",
        "CREATE TRIGGER reads_trigram_insert AFTER INSERT ON reads BEGIN "
        "INSERT INTO reads_trigram (rowid, plate) VALUES (new.rowid, new.plate); END",
        "CREATE TRIGGER reads_trigram_delete AFTER DELETE ON reads BEGIN "
        "INSERT INTO reads_trigram (reads_trigram, rowid, plate) "
        "VALUES ('delete', old.rowid, old.plate); END",
        "INSERT INTO reads_trigram (reads_trigram) VALUES ('rebuild')",
        # one camera's events in a time range, newest first, without a sort
        "CREATE INDEX reads_camera_seen ON reads (camera, first_seen)",
        "DROP INDEX reads_camera",
    ),
    # 4: the gate's audit records: what each decision of a gate camera fired, and
    # how it went (`alprd.sinks.gate`)
    (
        """CREATE TABLE gate_actions (
            time REAL NOT NULL,
            camera TEXT NOT NULL,
            plate TEXT NOT NULL,
            decision TEXT NOT NULL,
            action TEXT NOT NULL,
            result TEXT NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX gate_actions_time ON gate_actions (time)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def open_db(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit BEGIN), WAL, fully synchronous; a
    new file with incremental auto-vacuum.
    A directory that cannot take the file raises OSError naming why (SQLite
    itself only says "unable to open database file")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    if new:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            raise OSError(errno.EROFS, "Read-only file system", str(path.parent))
        if not os.access(path.parent, os.W_OK):
            raise OSError(errno.EACCES, "the directory is not writable by this user",
                          str(path.parent))  # fmt: skip
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    if new:  # pages freed by deleting rows can go back (set before anything is written)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (`BEGIN IMMEDIATE` .. `COMMIT`), rolled back on any
    error. SQLite ends a transaction itself on some errors (a full disk at commit):
    then there is nothing to roll back, and the error raised is the one that
    happened, not "cannot rollback"."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def migrate(
    conn: sqlite3.Connection, migrations: Sequence[Sequence[str]], path: Path
) -> tuple[int, int]:
    """Apply the steps `conn` lacks, one transaction each; (version before, version after)."""
    before = schema_version(conn)
    if before > len(migrations):
        raise SinkError(
            f"{path}: schema version {before} is newer than this alprd knows "
            f"({len(migrations)}); use a newer alprd or another file"
        )
    for version in range(before, len(migrations)):
        with transaction(conn):
            for statement in migrations[version]:
                conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
    return before, len(migrations)


def _glob(pattern: str) -> str:
    """A user glob (``*``, ``?``) as an SQLite GLOB pattern: plates are upper case and
    ``[`` is literal."""
    return pattern.upper().replace("[", "[[]")


@dataclass(frozen=True)
class Pruned:
    events: int
    snapshots: list[str]  # the deleted events' snapshot files, to delete too


class SqliteSink:
    """Events in an SQLite file; `write` is idempotent on the record's id."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = open_db(path)
            before, after = migrate(self._conn, MIGRATIONS, path)
        except (sqlite3.Error, OSError) as exc:
            raise SinkError(f"{path}: cannot open the database: {exc}") from exc
        if before != after:
            log.info("sqlite_migrated", path=str(path), from_version=before, to_version=after)

    def write(self, record: Record) -> None:
        row = (
            record["id"],
            record["camera"],
            record["plate"],
            float(record["confidence"]),
            parse_iso_utc(record["first_seen"]),
            parse_iso_utc(record["last_seen"]),
            record.get("known_label"),
            record.get("format") or "",
            json.dumps(record, ensure_ascii=False, separators=(",", ":")),
        )
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT OR IGNORE INTO reads (id, camera, plate, confidence, first_seen,"
                    " last_seen, known_label, format, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
        except sqlite3.Error as exc:
            raise SinkError(f"{self.path}: {exc}") from exc

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        plate_pattern: str | None = None,
        camera: str | None = None,
        limit: int = 100,
        plate_hash: str | None = None,
    ) -> list[Record]:
        """Records newest first (by first_seen). `since`/`until` are epoch seconds
        (inclusive / exclusive); `plate_pattern` is a glob (``ABC*``, ``A?C1234``);
        `plate_hash`: the exact plate's keyed hash (``privacy.hash_plates``), found
        beside it."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1; got {limit}")
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("first_seen >= ?")
            args.append(since)
        if until is not None:
            where.append("first_seen < ?")
            args.append(until)
        if plate_pattern is not None and plate_hash:
            where.append("(plate GLOB ? OR plate = ?)")
            args += [_glob(plate_pattern), plate_hash]
        elif plate_pattern is not None:
            where.append("plate GLOB ?")
            args.append(_glob(plate_pattern))
        if camera is not None:
            where.append("camera = ?")
            args.append(camera)
        sql = "SELECT payload, format FROM reads"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY first_seen DESC, rowid DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        out = []
        for payload, fmt in rows:
            record = json.loads(payload)
            record.setdefault("format", fmt)  # stored before events had one
            out.append(record)
        return out

    def prune(self, before: float | None, keep: int, batch: int = 5000) -> Pruned:
        """Delete events first seen before `before` (epoch seconds) and the oldest
        beyond the newest `keep` (0: no limit), at most `batch` in one call; then
        give up to as many free pages back to the file system (a store created by
        this version: incremental auto-vacuum)."""
        doomed: list[tuple[int, str]] = []
        try:
            with self._lock:
                if before is not None:
                    doomed += self._conn.execute(
                        "SELECT rowid, payload FROM reads WHERE first_seen < ? "
                        "ORDER BY first_seen LIMIT ?", (before, batch),
                    ).fetchall()  # fmt: skip
                room = batch - len(doomed)
                if keep and room > 0:
                    doomed += self._conn.execute(
                        "SELECT rowid, payload FROM reads WHERE rowid <= (SELECT rowid FROM reads"
                        " ORDER BY rowid DESC LIMIT 1 OFFSET ?) ORDER BY rowid LIMIT ?",
                        (keep, room),
                    ).fetchall()
                rowids = sorted({r for r, _ in doomed})
                if not rowids:
                    return Pruned(0, [])
                with transaction(self._conn):
                    self._conn.executemany("DELETE FROM reads WHERE rowid = ?",
                                           [(r,) for r in rowids])  # fmt: skip
                self._conn.execute(f"PRAGMA incremental_vacuum({len(rowids)})")
        except sqlite3.Error as exc:
            raise SinkError(f"{self.path}: cannot delete old events: {exc}") from exc
        snapshots = [str(p) for _, payload in dict(doomed).items()
                     for p in json.loads(payload).get("snapshots") or []]  # fmt: skip
        return Pruned(len(rowids), snapshots)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
