"""`make bench-pipeline`: alprd's pipeline against the naive loop, same video, same
run, one process each: frames/s, per-stage latency (p50/p99), reads, peak RSS,
start-up time to first result, and the speed ratio.

alprd runs every frame through `CameraPipeline` (vehicle detection, plates on
the vehicle crops, OCR, tracking, voting) in the serving venv; the naive loop
(benchmarks/naive_loop.py) runs in .venv-naive (`make .venv-naive`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

T0 = time.monotonic()
REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ALPRD_TEST_DATA") or REPO.parent / "shared" / "data")
VIDEO = DATA / "videos" / "rear-nl-L417VS.mp4"


def ours(video: str, limit: int) -> None:
    """Worker: the serving process, alone, so its RSS is what alprd costs."""
    from alprd import config as cfgmod
    from alprd import log as logmod
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.source import iter_file
    from alprd.pipeline.stream import CameraPipeline

    logmod.configure("console", "warning")
    config = cfgmod.load(cfgmod.find_config().path)
    recognizer = Recognizer.load(config)
    pipe = CameraPipeline("bench", recognizer, config)
    events, first = [], None
    started = time.monotonic()
    for frame in iter_file(video, "bench"):
        if frame.index >= limit:
            break
        events += pipe.process(frame)
        if first is None:
            first = time.monotonic() - T0
    events += pipe.finish()
    wall = time.monotonic() - started
    print(json.dumps({
        "frames": pipe.frames, "wall_s": wall, "stages": recognizer.times.samples,
        "reads": pipe.reads, "events": [e.plate for e in events],
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_result_s": first,
    }))  # fmt: skip


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--video", default=str(VIDEO))
    parser.add_argument("--frames", type=int, default=250, help="frames of the video to run")
    parser.add_argument("--naive-python", default=str(REPO / ".venv-naive" / "bin" / "python"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        ours(args.video, args.frames)
        return 0
    if not Path(args.video).is_file():
        print(f"no video at {args.video}: nothing to measure")
        return 0
    from rich.console import Console
    from rich.table import Table

    from alprd import config as cfgmod

    config = cfgmod.load(cfgmod.find_config().path)
    m = config.models
    results = {}
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", "--worker", "--video", args.video,
         "--frames", str(args.frames)],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    results["alprd"] = json.loads(run.stdout.strip().splitlines()[-1])
    if Path(args.naive_python).is_file():
        run = subprocess.run(
            [args.naive_python, str(REPO / "benchmarks" / "naive_loop.py"), args.video,
             str(m.vehicle.source), str(m.plate.source), str(m.ocr.source),
             str(m.ocr.dictionary), str(args.frames)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results["naive ultralytics loop"] = json.loads(run.stdout.strip().splitlines()[-1])
    else:
        print(f"no naive venv at {args.naive_python} (make .venv-naive): alprd only")
    table = Table(title=f"pipeline on {Path(args.video).name} ({os.cpu_count()} CPUs)")
    cols = ["", "frames/s", "vehicle p50/p99 ms", "plate p50/p99 ms", "ocr p50/p99 ms",
            "reads", "peak RSS MB", "first result s"]  # fmt: skip
    for c in cols:
        table.add_column(c, justify="left" if not c else "right")
    for name, r in results.items():
        st = r["stages"]
        table.add_row(
            name, f"{r['frames'] / r['wall_s']:.2f}",
            *(f"{pct(st[s], 0.5):.0f}/{pct(st[s], 0.99):.0f}" for s in ("vehicle", "plate", "ocr")),
            str(r["reads"]), f"{r['rss_mb']:.0f}", f"{r['first_result_s']:.1f}",
        )  # fmt: skip
    Console(width=140).print(table)
    if "naive ultralytics loop" in results:
        a, b = results["alprd"], results["naive ultralytics loop"]
        ratio = (a["frames"] / a["wall_s"]) / (b["frames"] / b["wall_s"])
        print(f"speed ratio alprd / naive: {ratio:.2f}x")
    print(f"alprd events: {results['alprd']['events']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
