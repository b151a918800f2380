"""`make bench-engines`: per backend and role, build time, warm load time, and cold
process-to-first-inference time, on a scratch copy of the configured models.

Figures come from one run on whatever machine runs it; compare rows of the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from alprd import config as cfgmod
from alprd import log as logmod
from alprd.engines import manager, registry
from alprd.engines.base import OCR_WIDTHS, ROLES

COLD = """
import sys, time, numpy as np
t0 = time.monotonic()
from alprd import config
from alprd.engines import manager
c = config.load(sys.argv[1])
t = manager.plan(c, sys.argv[2], manager.Overrides(backend=sys.argv[3]))
engine, _ = manager.load(t)
engine.run(np.zeros(t.request.shape.dims(int(sys.argv[4])), np.float32))
print(time.monotonic() - t0)
"""


def scratch_site(config: cfgmod.Config, root: Path) -> Path:
    models = root / "models"
    models.mkdir()
    m = config.models
    for src in (m.vehicle.source, m.plate.source, m.ocr.source, m.ocr.dictionary):
        shutil.copyfile(src, models / src.name)
    etc = root / "etc"
    etc.mkdir()
    path = etc / "alprd.toml"
    path.write_text(
        '[paths]\nroot = ".."\n'
        f'[models.vehicle]\nsource = "{m.vehicle.source.name}"\n'
        f'[models.plate]\nsource = "{m.plate.source.name}"\n'
        f'[models.ocr]\nsource = "{m.ocr.source.name}"\ndictionary = "{m.ocr.dictionary.name}"\n'
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="config whose models to measure (default: as alprd)")
    parser.add_argument("--repeat", type=int, default=3, help="loads / cold starts per cell")
    args = parser.parse_args()
    logmod.configure("console", "warning")
    config = cfgmod.load(cfgmod.find_config(args.config).path)
    backends = [b for b in ("onnxruntime", "openvino", "tensorrt") if registry.installed(b)]
    console = Console(width=120)
    table = Table(title=f"engine benchmark ({os.cpu_count()} CPUs, repeat {args.repeat})")
    for col in ("backend", "model", "precision", "build s", "warm load s", "cold first result s"):
        table.add_column(
            col, justify="left" if col in ("backend", "model", "precision") else "right"
        )
    with tempfile.TemporaryDirectory(prefix="alprd-bench-") as tmp:
        path = scratch_site(config, Path(tmp))
        site = cfgmod.load(path)
        for backend in backends:
            for role in ROLES:
                target = manager.plan(site, role, manager.Overrides(backend=backend))
                outcome = manager.ensure(target, force=True)
                if outcome.status != "built":
                    table.add_row(backend, role, target.request.precision, outcome.status, "-", "-")
                    continue
                loads = []
                for _ in range(args.repeat):
                    started = time.monotonic()
                    engine, _ = manager.load(target)
                    loads.append(time.monotonic() - started)
                    engine.close()
                colds = []
                for _ in range(args.repeat):
                    started = time.monotonic()
                    subprocess.run(
                        [sys.executable, "-c", COLD, str(path), role, backend, str(OCR_WIDTHS[1])],
                        check=True, capture_output=True,
                    )  # fmt: skip
                    colds.append(time.monotonic() - started)
                table.add_row(
                    backend, role, target.request.precision, f"{outcome.build_s:.1f}",
                    f"{statistics.median(loads):.3f}", f"{statistics.median(colds):.2f}",
                )  # fmt: skip
        # The reference point: a .pt through ultralytics, cold (what the seed did).
        plate_pt = site.models.plate.source
        if plate_pt.suffix == ".pt" and registry.installed("ultralytics"):
            code = (
                "import os, time; t0 = time.monotonic()\n"
                "os.environ.update(YOLO_OFFLINE='1', YOLO_AUTOINSTALL='False')\n"
                "from ultralytics import YOLO\n"
                "import torch\n"
                f"m = YOLO({str(plate_pt)!r}).model.eval()\n"
                "with torch.no_grad(): m(torch.zeros(1, 3, 416, 416))\n"
                "print(time.monotonic() - t0)\n"
            )
            colds = []
            for _ in range(args.repeat):
                started = time.monotonic()
                proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
                colds.append(time.monotonic() - started if proc.returncode == 0 else float("nan"))
            table.add_row(
                "torch (.pt via ultralytics)", "plate", "fp32", "-", "-",
                f"{statistics.median(colds):.2f}",
            )  # fmt: skip
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
