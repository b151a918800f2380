"""One JSON object per line, appended, flushed and fsynced per event, rotated by size.

When a line would take the file past `max_mb`, the file becomes ``<name>.1`` (``.1``
becomes ``.2``, ... and the oldest beyond `keep` is deleted) and a new file starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import BinaryIO

from alprd.log import get_logger
from alprd.sinks.base import Record, SinkError

log = get_logger("alprd.sinks")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlSink:
    """Append-only JSON lines at `path`; `keep` rotated files (``.1`` newest)."""

    name = "jsonl"

    def __init__(self, path: Path, max_mb: float = 100.0, keep: int = 5) -> None:
        if max_mb <= 0:
            raise ValueError(f"max_mb must be > 0; got {max_mb}")
        if keep < 0:
            raise ValueError(f"keep must be >= 0; got {keep}")
        self.path = path
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.keep = keep
        self._lock = threading.Lock()
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO | None = self._open()
        except OSError as exc:
            raise SinkError(f"{path}: cannot open: {exc}") from exc

    def _open(self) -> BinaryIO:
        created = not self.path.exists()
        f = open(self.path, "ab")  # noqa: SIM115 (kept open across writes)
        if created:
            _fsync_dir(self.path.parent)
        return f

    def rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.keep == 0:
            self.path.unlink()
        else:
            self.rotated(self.keep).unlink(missing_ok=True)
            for n in range(self.keep - 1, 0, -1):
                if self.rotated(n).exists():
                    os.replace(self.rotated(n), self.rotated(n + 1))
            os.replace(self.path, self.rotated(1))
        _fsync_dir(self.path.parent)
        log.info("jsonl_rotated", path=str(self.path), keep=self.keep)

    def write(self, record: Record) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            if self._closed:
                raise SinkError(f"{self.path}: closed")
            size = -1
            try:
                if self._file is None:  # a failed rotation or write: start again
                    self._file = self._open()
                size = os.fstat(self._file.fileno()).st_size
                if size > 0 and size + len(line) > self.max_bytes:
                    self._rotate()
                    self._file = self._open()
                    size = 0
                self._file.write(line)
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                if self._file is not None:
                    with contextlib.suppress(OSError):  # the unwritten rest goes too
                        self._file.close()
                    self._file = None
                if size >= 0:  # a full disk may have taken part of the line: cut it off
                    with contextlib.suppress(OSError):
                        os.truncate(self.path, size)
                raise SinkError(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
