"""`make bench-swap`: a running daemon while its plate model changes, three ways.

A camera (the NL video, looped, at `--fps`) feeds the pipeline. In turn: a new
plate model (same network, new bytes) is dropped into models/ as `best.onnx`
with no config edit (identified, routed to the plate role, built, swapped); a
reload asks for another plate input size (built in the background while the old
engine serves); `alprd models rollback plate` puts the previous model back. For
each, printed side by side: the longest gap between processed frames while the
new engine was built and around the swap, as a multiple of the camera's period,
and the frames the camera slot dropped.
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
from collections.abc import Callable
from pathlib import Path

import onnx
from structlog.testing import capture_logs

from alprd import cli
from alprd import log as logmod
from alprd.service import Service
from alprd.systemd import Notifier
from benchmarks import DATA, default_models, plate_onnx


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
        default_models(root)
        (root / "etc").mkdir()
        exported = plate_onnx(root)
        clip = root / "clip.mp4"
        shutil.copyfile(video, clip)
        config = root / "etc" / "alprd.toml"
        config.write_text(
            f'[paths]\nroot = ".."\n[engines]\nbackend = "{args.backend}"\n'
            "[models]\nwatch_quiet_s = 0.5\n"
            f'[[cameras]]\nname = "cam"\nurl = "{clip}"\nfps = {args.fps}\nloop = true\n'
        )
        frames: list[tuple[float, int]] = []
        service = Service(config, notifier=Notifier({}))
        service.on_frame = lambda cam, i: frames.append(
            (time.monotonic(), service.cameras[cam].slot.dropped)
        )

        def drop() -> None:
            model = onnx.load(exported)
            model.metadata_props.add(key="revision", value="2")
            onnx.save(model, root / "models" / ".best.tmp")
            os.rename(root / "models" / ".best.tmp", root / "models" / "best.onnx")

        def reload() -> None:
            config.write_text(config.read_text() + "[models.plate]\ninput_size = 320\n")
            service.request_reload()

        def rollback() -> None:  # `alprd models rollback plate`
            args = argparse.Namespace(config=str(config), role="plate", steps=1)
            cli.cmd_models_rollback(args)

        paths: list[tuple[str, Callable[[], None]]] = [
            ("drop best.onnx", drop), ("reload, new input", reload), ("rollback", rollback),
        ]  # fmt: skip
        marks: list[tuple[str, float, float | None]] = []
        thread = threading.Thread(target=service.run, daemon=True)
        with capture_logs() as logs:
            thread.start()
            while not any(m.startswith("READY=1") for m in service.notifier.sent):
                time.sleep(0.05)
            time.sleep(2.0)
            steady = time.monotonic()
            time.sleep(8.0)  # the steady state first: the camera's own jitter
            marks.append(("steady (no change)", steady, None))
            for n, (name, action) in enumerate(paths, start=1):
                started = time.monotonic()
                action()
                done = None
                while done is None and time.monotonic() - started < 300:
                    if sum(e["event"] == "engine_swapped" for e in logs) >= n:
                        done = time.monotonic()
                    time.sleep(0.01)
                marks.append((name, started, done))
                time.sleep(2.0)
            service.request_stop()
            thread.join(timeout=30)
    period = 1.0 / args.fps

    def phase(a: float, b: float) -> tuple[float, int]:
        sel = [(t, d) for t, d in frames if a <= t <= b]
        gaps = [y[0] - x[0] for x, y in itertools.pairwise(sel)]
        return (max(gaps, default=0.0), sel[-1][1] - sel[0][1] if sel else 0)

    all_gaps = [y[0] - x[0] for x, y in itertools.pairwise(frames)]
    median = statistics.median(all_gaps) * 1000
    print(f"camera {args.fps:g} fps (period {period * 1000:.0f} ms), backend {args.backend}, "
          f"{len(frames)} frames processed, median gap {median:.0f} ms")  # fmt: skip
    print(f"{'path':<20} {'to swap':>8} {'longest gap: build':>20} {'around the swap':>18} "
          f"{'dropped':>8}")  # fmt: skip
    ok = True
    for name, started, done in marks:
        if name.startswith("steady"):
            still = phase(started, started + 8.0)
            print(f"{name:<20} {'':>8} {still[0] * 1000:8.0f} ms {still[0] / period:5.1f}x "
                  f"{'':>18} {still[1]:8d}")  # fmt: skip
            continue
        if done is None:
            print(f"{name:<20} no swap within 300 s")
            ok = False
            continue
        build = phase(started, done - 0.25)
        swap = phase(done - 0.25, done + 0.5)
        gap = max(build[0], swap[0])
        print(f"{name:<20} {done - started:7.1f}s {build[0] * 1000:8.0f} ms "
              f"{build[0] / period:5.1f}x {swap[0] * 1000:8.0f} ms {swap[0] / period:4.1f}x "
              f"{build[1] + swap[1]:8d}"
              + ("" if gap <= 2 * period else "   (over 2x the period)"))  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
