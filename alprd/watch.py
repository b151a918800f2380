"""Watch models/ for retrained models: OS events -> queue -> debouncer -> rebuild.

The watchdog callback only enqueues a path. A debouncer thread takes a file only
after a quiet period in which its size and mtime did not change (a `cp` in
place, a slow `scp`, an overwrite), or when it is renamed or moved into the
directory (temp name then rename, `mv`: the final name appears complete).
Temporary names, editor files, hidden files and alprd's own artefacts are
ignored. Which role a file feeds comes from the config (`models.<role>.source`);
a model file that no role names is logged once, with how to use it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from alprd.engines.base import Role
from alprd.log import get_logger

log = get_logger("alprd.watch")

MODEL_SUFFIXES = (".pt", ".onnx")
#: Our own artefacts and the usual temporary / editor names.
IGNORED_ENDINGS = (
    ".engine", ".openvino.blob", ".onnxruntime.onnx", ".json", ".lock",
    ".tmp", ".part", ".partial", ".crdownload", ".swp", ".swx", ".bak", "~",
)  # fmt: skip

Stat = tuple[int, int]  # size, mtime_ns


def is_candidate(path: Path) -> bool:
    """A file that could be a model someone dropped in (not a temp or artefact)."""
    name = path.name
    if name.startswith((".", "#")) or name.endswith(IGNORED_ENDINGS):
        return False
    return name.endswith(MODEL_SUFFIXES)


def stat_of(path: Path) -> Stat | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


@dataclass
class _Pending:
    stat: Stat | None
    since: float  # when the stat last changed (or the file was first seen)


class Debouncer:
    """Pure: paths become due after `quiet_s` with an unchanged, non-empty stat.
    The caller passes the time and how to stat."""

    def __init__(self, quiet_s: float) -> None:
        self.quiet_s = quiet_s
        self._pending: dict[Path, _Pending] = {}

    def touch(self, path: Path, now: float, stat: Stat | None) -> None:
        self._pending[path] = _Pending(stat, now)

    def due(self, now: float, stat: Callable[[Path], Stat | None]) -> list[Path]:
        ready = []
        for path, p in list(self._pending.items()):
            current = stat(path)
            if current is None:  # gone (renamed away, deleted)
                del self._pending[path]
            elif current != p.stat:  # still being written
                self._pending[path] = _Pending(current, now)
            elif now - p.since >= self.quiet_s and current[0] > 0:
                del self._pending[path]
                ready.append(path)
        return ready

    @property
    def waiting(self) -> list[Path]:
        return list(self._pending)


class _Enqueue(FileSystemEventHandler):
    """The OS-side callback: enqueue the path, nothing else."""

    def __init__(self, q: queue.Queue[Path]) -> None:
        self.q = q

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        path = getattr(event, "dest_path", "") or event.src_path
        self.q.put(Path(os.fsdecode(path)))


class ModelWatcher:
    def __init__(
        self,
        models_dir: Path,
        roles_for: Callable[[Path], list[Role]],
        on_ready: Callable[[Path, list[Role]], None],
        *,
        quiet_s: float = 2.0,
        poll: bool = False,
        poll_interval_s: float = 2.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.models_dir = models_dir
        self.roles_for, self.on_ready = roles_for, on_ready
        self.debouncer = Debouncer(quiet_s)
        self._clock = clock or time.monotonic
        self._queue: queue.Queue[Path] = queue.Queue()
        self._observer = PollingObserver(timeout=poll_interval_s) if poll else Observer()
        self._observer.schedule(_Enqueue(self._queue), str(models_dir), recursive=False)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watch", daemon=True)
        self._ignored: set[Path] = set()
        self.mode = "poll" if poll else "inotify"

    def start(self) -> None:
        self._observer.start()
        self._thread.start()
        log.info("models_watched", dir=str(self.models_dir), mode=self.mode)

    def stop(self) -> None:
        self._halt.set()
        self._observer.stop()
        self._observer.join(timeout=5)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._halt.wait(0.2):
            now = self._clock()
            while True:
                try:
                    path = self._queue.get_nowait()
                except queue.Empty:
                    break
                if path.parent == self.models_dir and is_candidate(path):
                    self.debouncer.touch(path, now, stat_of(path))
            for path in self.debouncer.due(now, stat_of):
                roles = self.roles_for(path)
                if roles:
                    log.info("model_arrived", file=str(path), roles=",".join(roles))
                    self.on_ready(path, roles)
                elif path not in self._ignored:
                    self._ignored.add(path)
                    log.warning(
                        "model_ignored",
                        file=str(path),
                        hint=f'no role uses it: set models.<role>.source = "{path.name}" '
                        "and reload (systemctl reload alprd)",
                    )
