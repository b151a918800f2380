"""Watch models/ for retrained models: OS events -> queue -> debouncer -> rebuild.

The watchdog callback only enqueues a path. A debouncer thread takes a file only
after a quiet period in which its size and mtime did not change (a `cp` in
place, a slow `scp`, an overwrite), or when it is renamed or moved into the
directory (temp name then rename, `mv`: the final name appears complete).
Temporary names, editor files, hidden files and alprd's own artefacts (engines,
sidecars, the torch backend's ``.torch.pt``) are ignored. A file a role is served
from goes to `on_ready` with its roles; any other model file to `on_unclaimed`
(the daemon identifies it and routes it to the role it fits), or, without that
callback, is logged once with how to use it.
"""

from __future__ import annotations

import glob
import os
import queue
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from alprd.bounded import RecentSet
from alprd.engines.base import Role
from alprd.log import get_logger

log = get_logger("alprd.watch")

MODEL_SUFFIXES = (".pt", ".onnx")
#: What alprd builds beside a model (one per backend; each with a .json sidecar).
ENGINE_ENDINGS = (".engine", ".openvino.blob", ".onnxruntime.onnx", ".torch.pt")
#: Our own artefacts and the usual temporary / editor names.
IGNORED_ENDINGS = (
    ".engine", ".openvino.blob", ".onnxruntime.onnx", ".torch.pt", ".json", ".lock",
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


def engines_of(model: Path) -> list[Path]:
    """The engine files and sidecars alprd built from `model` (named after its stem)."""
    out = []
    for ending in ENGINE_ENDINGS:
        engine = model.with_name(model.stem + ending)
        out += [p for p in (engine, engine.with_name(engine.name + ".json")) if p.exists()]
    return out


def drop_engines_of(model: Path, serving: Collection[Path]) -> None:
    """`model` was deleted: the engines built from it go too, unless one is in
    `serving` (engine files that serve) or another model of the same stem is still
    there to be built from."""
    siblings = model.parent.glob(f"{glob.escape(model.stem)}.*")
    if any(is_candidate(p) for p in siblings):
        return
    for artefact in engines_of(model):
        if artefact in serving or artefact.with_suffix("") in serving:
            continue
        try:
            artefact.unlink()
        except OSError as exc:
            log.warning("engine_not_removed", file=str(artefact), reason=str(exc))
            continue
        log.info("engine_removed", file=str(artefact), reason=f"{model.name} was removed")


class _Enqueue(FileSystemEventHandler):
    """The OS-side callback: enqueue the path (and whether it went), nothing else."""

    def __init__(self, q: queue.Queue[tuple[Path, bool]]) -> None:
        self.q = q

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type == "deleted":
            self.q.put((Path(os.fsdecode(event.src_path)), True))
            return
        path = getattr(event, "dest_path", "") or event.src_path
        self.q.put((Path(os.fsdecode(path)), False))


class ModelWatcher:
    def __init__(
        self,
        models_dir: Path,
        roles_for: Callable[[Path], list[Role]],
        on_ready: Callable[[Path, list[Role]], None],
        *,
        on_unclaimed: Callable[[Path], None] | None = None,
        on_removed: Callable[[Path], None] | None = None,
        quiet_s: float = 2.0,
        poll: bool = False,
        poll_interval_s: float = 2.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.models_dir = models_dir
        self.roles_for, self.on_ready, self.on_unclaimed = roles_for, on_ready, on_unclaimed
        self.on_removed = on_removed
        self.debouncer = Debouncer(quiet_s)
        self._clock = clock or time.monotonic
        self._queue: queue.Queue[tuple[Path, bool]] = queue.Queue()
        self._observer = PollingObserver(timeout=poll_interval_s) if poll else Observer()
        self._observer.schedule(_Enqueue(self._queue), str(models_dir), recursive=False)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watch", daemon=True)
        self._ignored: RecentSet[Path] = RecentSet(256)  # said once each
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
                    path, removed = self._queue.get_nowait()
                except queue.Empty:
                    break
                if path.parent != self.models_dir or not is_candidate(path):
                    continue
                if not removed:
                    self.debouncer.touch(path, now, stat_of(path))
                elif self.on_removed is not None and not path.exists():
                    self.on_removed(path)
            for path in self.debouncer.due(now, stat_of):
                roles = self.roles_for(path)
                if roles:
                    log.info("model_arrived", file=str(path), roles=",".join(roles))
                    self.on_ready(path, roles)
                elif self.on_unclaimed is not None:
                    log.info("model_arrived", file=str(path), roles="(to identify)")
                    self.on_unclaimed(path)
                elif path not in self._ignored:
                    self._ignored.add(path)
                    log.warning(
                        "model_ignored",
                        file=str(path),
                        hint=f'no role uses it: set models.<role>.source = "{path.name}" '
                        "and reload (systemctl reload alprd)",
                    )
