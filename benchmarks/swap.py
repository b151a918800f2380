"""`make bench-swap`: a running daemon while a retrained plate model is dropped in.

A camera (the NL video replayed at `--fps`) feeds the pipeline; after a few
seconds a new plate model (same network, new bytes) is renamed into models/. The
daemon rebuilds it in its child process and swaps it in between frames. Printed:
the median gap between processed frames, the longest gap during the build and
around the swap, and the frames the camera slot dropped in each phase.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import onnx
from structlog.testing import capture_logs

from alprd import config as cfgmod
from alprd import log as logmod
from alprd.engines import manager
from alprd.service import Service
from alprd.systemd import Notifier

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ALPRD_TEST_DATA") or REPO.parent / "shared" / "data")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--backend", default="openvino")
    args = parser.parse_args()
    video = DATA / "videos" / "rear-nl-L417VS.mp4"
    if not video.is_file():
        print(f"no video at {video}: nothing to measure")
        return 0
    logmod.configure("console", "warning")
    with tempfile.TemporaryDirectory(prefix="alprd-swap-") as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        (root / "etc").mkdir()
        for name in ("vehicle-yolov8n-coco.onnx", "ocr-ppocrv5-rec.onnx", "ocr-ppocrv5-dict.txt",
                     "plate-yolov8n.pt"):  # fmt: skip
            shutil.copyfile(REPO / "models" / name, root / "models" / name)
        # The plate model as ONNX, so a "retrained" variant is quick to make.
        (root / "etc" / "export.toml").write_text(
            '[paths]\nroot = ".."\n[engines]\nbackend = "onnxruntime"\n'
        )
        target = manager.plan(cfgmod.load(root / "etc" / "export.toml"), "plate")
        manager.ensure(target)
        shutil.copyfile(target.engine, root / "models" / "plate.onnx")
        clip = root / "clip.mp4"
        shutil.copyfile(video, clip)
        (root / "etc" / "alprd.toml").write_text(
            f'[paths]\nroot = ".."\n[engines]\nbackend = "{args.backend}"\n'
            '[models]\nwatch_quiet_s = 0.5\n[models.plate]\nsource = "plate.onnx"\n'
            f'[[cameras]]\nname = "cam"\nurl = "{clip}"\nfps = {args.fps}\n'
        )
        frames: list[tuple[float, int]] = []
        service = Service(root / "etc" / "alprd.toml", notifier=Notifier({}))
        service.on_frame = lambda cam, i: frames.append(
            (time.monotonic(), service.cameras[cam].slot.dropped)
        )
        thread = threading.Thread(target=service.run, daemon=True)
        with capture_logs() as logs:
            thread.start()
            while not any(m.startswith("READY=1") for m in service.notifier.sent):
                time.sleep(0.05)
            time.sleep(1.5)
            dropped_at = time.monotonic()
            model = onnx.load(root / "models" / "plate.onnx")
            model.metadata_props.add(key="revision", value="2")
            onnx.save(model, root / "models" / ".plate.tmp")
            os.rename(root / "models" / ".plate.tmp", root / "models" / "plate.onnx")
            swapped_at = None
            while swapped_at is None and time.monotonic() - dropped_at < 120:
                if any(e["event"] == "engine_swapped" for e in logs):
                    swapped_at = time.monotonic()
                time.sleep(0.01)
            time.sleep(1.0)
            service.request_stop()
            thread.join(timeout=30)
    if swapped_at is None:
        print("no swap happened:", [(e["event"], e.get("reason", "")) for e in logs][-15:])
        return 1

    def phase(a: float, b: float) -> tuple[float, int]:
        sel = [(t, d) for t, d in frames if a <= t <= b]
        gaps = [y[0] - x[0] for x, y in itertools.pairwise(sel)]
        return (max(gaps, default=0.0), sel[-1][1] - sel[0][1] if sel else 0)

    all_gaps = [y[0] - x[0] for x, y in itertools.pairwise(frames)]
    before = phase(frames[0][0], dropped_at)
    build = phase(dropped_at, swapped_at - 0.25)
    swap = phase(swapped_at - 0.25, swapped_at + 0.5)
    print(f"camera {args.fps:g} fps, backend {args.backend}, {len(frames)} frames processed")
    print(f"median gap between frames          {statistics.median(all_gaps) * 1000:7.0f} ms")
    print(f"longest gap before the drop        {before[0] * 1000:7.0f} ms, dropped {before[1]}")
    print(f"longest gap during the build       {build[0] * 1000:7.0f} ms, dropped {build[1]}"
          f" ({swapped_at - dropped_at:.1f} s from drop to swap)")  # fmt: skip
    print(f"longest gap around the swap        {swap[0] * 1000:7.0f} ms, dropped {swap[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
