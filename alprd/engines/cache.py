"""Engines on disk: where they live, their sidecar, the staleness check, atomic
install and the per-engine lock.

Engine ``models/plate-yolov8n.engine`` has the sidecar
``models/plate-yolov8n.engine.json`` (fingerprint inputs, engine sha256 and
size, build time, validation result, class names). Install writes the new engine
and sidecar to temporary names, fsyncs both, then renames engine, then sidecar.
The sidecar records the engine's sha256, which the check compares, so a crash
between the two renames leaves a pair that is detected and rebuilt, never one that
loads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alprd.engines import fingerprint as fp
from alprd.hashing import sha256_file

LOCK_DIR = ".locks"


def engine_path(source: Path, extension: str) -> Path:
    """Engines sit beside their model: ``models/plate-yolov8n.pt`` ->
    ``models/plate-yolov8n.engine`` (TensorRT), ``...openvino.blob``, ..."""
    return source.with_name(source.stem + extension)


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


@dataclass(frozen=True)
class Sidecar:
    fingerprint: str
    inputs: dict[str, Any]
    engine_sha256: str
    engine_size: int
    built_at: str  # ISO 8601 UTC
    build_s: float
    validation: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)  # names, input/output shapes
    alprd_version: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.model.get("names", ()))


class SidecarError(Exception):
    pass


def read_sidecar(engine: Path) -> Sidecar:
    path = sidecar_path(engine)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Sidecar(**data)
    except FileNotFoundError:
        raise SidecarError("sidecar_missing") from None
    except (OSError, ValueError, TypeError):
        raise SidecarError("sidecar_corrupt") from None


def check(engine: Path, inputs: fp.FingerprintInputs) -> list[str]:
    """Why `engine` cannot be used for `inputs` (reason words); [] when current."""
    if not engine.is_file():
        return ["missing"]
    try:
        side = read_sidecar(engine)
    except SidecarError as exc:
        return [str(exc)]
    changed = fp.reasons(side.inputs, inputs)
    if changed or side.fingerprint != fp.fingerprint(inputs):
        return changed or ["fingerprint_mismatch"]
    if engine.stat().st_size != side.engine_size:
        return [
            "engine_truncated" if engine.stat().st_size < side.engine_size else "engine_corrupt"
        ]
    if sha256_file(engine) != side.engine_sha256:
        return ["engine_corrupt"]
    return []


def temporary_path(engine: Path) -> Path:
    """A fresh temporary file in the engine's directory (same file system)."""
    fd, name = tempfile.mkstemp(prefix=f".{engine.name}.", suffix=".tmp", dir=engine.parent)
    os.close(fd)
    return Path(name)


def _scratch_prefix(engine: Path) -> str:
    return f"alprd-build-{hashlib.sha256(str(engine).encode()).hexdigest()[:12]}-"


def scratch_dir(engine: Path) -> Path:
    """A fresh directory in the temporary directory for one build of `engine` (the
    build child's TMPDIR: the exported ONNX, whatever its libraries write); the
    caller removes it. Named after the engine, so that one left by a killed build
    is removed by the next build of the same engine (`remove_temporaries`)."""
    return Path(tempfile.mkdtemp(prefix=_scratch_prefix(engine)))


def remove_temporaries(engine: Path) -> None:
    """Temporaries a killed build left behind. Call with the engine's lock held."""
    for tmp in engine.parent.glob(f".{engine.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
    for scratch in Path(tempfile.gettempdir()).glob(f"{_scratch_prefix(engine)}*"):
        shutil.rmtree(scratch, ignore_errors=True)


def install(tmp_engine: Path, engine: Path, sidecar: Sidecar) -> None:
    """Atomically put the built engine and its sidecar in place."""
    tmp_side = temporary_path(sidecar_path(engine))
    try:
        tmp_side.write_text(json.dumps(asdict(sidecar), indent=2) + "\n", encoding="utf-8")
        for path in (tmp_engine, tmp_side):
            with path.open("rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp_engine, 0o644)
        os.chmod(tmp_side, 0o644)
        os.replace(tmp_engine, engine)
        os.replace(tmp_side, sidecar_path(engine))
    finally:
        tmp_side.unlink(missing_ok=True)
    dir_fd = os.open(engine.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def locked(engine: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the engine's build lock (``flock``; released if the holder dies).
    `on_wait(holder)` is called once when another process holds it."""
    lock_dir = engine.parent / LOCK_DIR
    lock_dir.mkdir(exist_ok=True)
    with (lock_dir / f"{engine.name}.lock").open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            if on_wait:
                on_wait(f.read().strip() or "another process")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
