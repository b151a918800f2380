"""Shared test helpers. Real files, real subprocesses; no network except where marked."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Real test data beside the checkout (never copied into it); ALPRD_TEST_DATA overrides.
SHARED_DATA = Path(os.environ.get("ALPRD_TEST_DATA") or REPO.parent / "shared" / "data").resolve()
#: The default models (fetched by `make install`, or committed under trained/),
#: relative to models/.
DEFAULT_MODELS = (
    "vehicle-yolov8n-coco.onnx",
    "plate-yolov8n.pt",
    "trained/ocr-alprd-plate.onnx",
    "trained/ocr-alprd-plate-dict.txt",
)


#: How a test that needs the real data says it is absent; CI accepts only this kind
#: of skip (and GPU/TensorRT ones): `.ci/run` fails on any other.
DATA_ABSENT = "real data absent"


def needs_data(path: Path, what: str = "test data"):
    """Skip (with the reason CI accepts) when the real data at `path` is absent."""
    return pytest.mark.skipif(
        not path.exists(),
        reason=f"{DATA_ABSENT}: {what} at {path} (ALPRD_TEST_DATA overrides)",
    )


def copy_models(dest: Path, names: tuple[str, ...] = DEFAULT_MODELS) -> None:
    """Copies of the checkout's model files `names` under `dest` (sub-folders kept)."""
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "models" / name, dest / name)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_wheel(directory: Path, name: str, version: str, members: dict[str, bytes]) -> Path:
    """A tiny but valid wheel (METADATA, WHEEL, RECORD) that pip can download offline."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{dist}-py3-none-any.whl"
    info = f"{dist}.dist-info"
    files = dict(members)
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: alprd-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


def run_alprd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """The real console entry point in a child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "alprd", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=600,
    )


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a config file under tmp_path/etc and return its path."""

    def _write(text: str, name: str = "alprd.toml") -> Path:
        etc = tmp_path / "etc"
        etc.mkdir(exist_ok=True)
        path = etc / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
