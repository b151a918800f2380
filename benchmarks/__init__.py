"""alprd's benchmarks (`make bench*`). Real data (videos, photos, labelled crops)
is read from `$ALPRD_TEST_DATA`, by default the `shared/data` folder beside the
checkout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ALPRD_TEST_DATA") or REPO.parent / "shared" / "data").resolve()


def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """`/proc/<pid>/smaps_rollup` as kB per field (Rss, Pss, Anonymous, ...)."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        kb[key] = int(value.split()[0])
    return kb


#: glibc's heaps for threads other than the main one start at multiples of this
_THREAD_HEAP_ALIGN = 64 << 20
#: mapped files counted apart, by a part of their path (OpenCV's wheel bundles FFmpeg)
_LIBRARIES = (("openvino", "openvino"), ("opencv", "cv2"), ("opencv", "opencv"))


def resident_by_kind(pid: int | str = "self") -> dict[str, float]:
    """Resident MB of `pid` by what holds it (`/proc/<pid>/smaps`): code and data
    mapped from files (OpenVINO, OpenCV with its FFmpeg, the rest), the main heap,
    the other threads' heaps, anonymous blocks of 1 MB or more (large allocations
    on pages of their own, Python's object arenas), smaller anonymous mappings and
    stacks."""
    out: dict[str, float] = {}
    kind = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            name = head[5].strip() if len(head) > 5 else ""
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            if name == "[heap]":
                kind = "main heap"
            elif name.startswith("[stack"):
                kind = "stacks"
            elif name.startswith("/"):
                lib = next((lib for lib, key in _LIBRARIES if key in name), "the rest")
                kind = f"files: {lib}"
            elif name:
                kind = "other"
            elif lo % _THREAD_HEAP_ALIGN == 0:
                kind = "threads' heaps"
            else:
                kind = "anonymous >= 1 MB" if hi - lo >= 1 << 20 else "anonymous < 1 MB"
        elif line.startswith("Rss:"):
            out[kind] = out.get(kind, 0.0) + int(line.split()[1]) / 1024
    return out


#: the default models (`alprd models fetch`) a benchmark's own site starts with
MODELS = ("vehicle-yolov8n-coco.onnx", "plate-yolov8n.pt", "trained/ocr-alprd-plate.onnx",
          "trained/ocr-alprd-plate-dict.txt")  # fmt: skip


def default_models(root: Path, engines: bool = False) -> Path:
    """The default models copied into `root/models` (and their built OpenVINO
    engines with `engines`: a daemon that starts without a build); that folder."""
    models = root / "models"
    for name in MODELS:
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "models" / name, models / name)
    for engine in (REPO / "models").glob("*.openvino.blob*") if engines else ():
        shutil.copyfile(engine, models / engine.name)
    return models


def plate_onnx(root: Path) -> Path:
    """The default plate model exported to ONNX under `root/export` (a "retrained"
    variant, new bytes of the same network, is then quick to make)."""
    from alprd import config as cfgmod
    from alprd.engines import manager

    work = root / "export"
    work.mkdir()
    shutil.copyfile(REPO / "models" / "plate-yolov8n.pt", work / "plate-yolov8n.pt")
    (work / "export.toml").write_text(
        '[paths]\nmodels_dir = "."\n[engines]\nbackend = "onnxruntime"\n'
    )
    target = manager.plan(cfgmod.load(work / "export.toml"), "plate")
    manager.ensure(target)
    return target.engine
