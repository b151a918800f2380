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
