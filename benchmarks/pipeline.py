"""`make bench` (and `make bench-pipeline`, one video): alprd's pipeline against the
naive loop, same videos, same run, one process each: frames/s, per-stage latency
(p50/p99), reads, peak RSS, start-up time to first result, and the speed ratio;
then N cameras (the videos replayed at other offsets) through alprd's multi-camera
batching against the naive loop batched (Ultralytics `predict` on a list) and as N
processes.

Fair both ways: both sides load and warm up untimed (one pass over the first
frame), decode the same way (inside the timed loop, as a camera delivers frames,
and before it: a row each), run the same three networks at the same input sizes
on the same CPU torch / ONNX Runtime, and alprd is shown twice: **same work**
(every frame searched and read: motion gating and per-track skipping off) and
**as configured** (its defaults). "still/skipped": frames motion gating skipped
and vehicle searches per-track skipping saved. `--set key=value` (repeatable)
changes alprd's config for the run (a non-square vehicle input is not the same
work: the naive loop's vehicle ONNX has a fixed size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from benchmarks import DATA, REPO

T0 = time.monotonic()
VIDEOS = DATA / "videos"
VIDEO = VIDEOS / "rear-nl-L417VS.mp4"


def load_config(sets: list[str]) -> Any:
    """The checkout's config with `--set section.key=TOML value` overrides."""
    from alprd import config as cfgmod

    config = cfgmod.load(cfgmod.find_config().path)
    for item in sets:
        key, _, raw = item.partition("=")
        config = _set(config, key.split("."), tomllib.loads(f"v = {raw}")["v"])
    return config


def _set(obj: Any, keys: list[str], value: Any) -> Any:
    """`obj` with keys[0]...keys[-1] set to value; the table holding it re-validated."""
    if len(keys) == 1:
        return type(obj).model_validate({**obj.model_dump(), keys[0]: value})
    return obj.model_copy(update={keys[0]: _set(getattr(obj, keys[0]), keys[1:], value)})


def as_the_daemon(config: Any, recognizer: Any) -> None:
    """The C heap set up as `alprd run` sets it (`service.heap_mmap_threshold_kb`)."""
    from alprd import heap
    from alprd.service import heap_threshold_kb

    heap.configure(heap_threshold_kb(config, recognizer))


def ours(video: str, limit: int, sets: list[str], decode: str) -> None:
    """Worker: the serving process, alone, so its RSS is what alprd costs. Warmed
    up untimed on the first frame (a throwaway pipeline), as the naive loop is."""
    from alprd import log as logmod
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.source import iter_file
    from alprd.pipeline.stream import CameraPipeline

    logmod.configure("console", "warning")
    config = load_config(sets)
    recognizer = Recognizer.load(config)
    as_the_daemon(config, recognizer)
    warm = CameraPipeline("warm-up", recognizer, config)
    warm.process(next(iter_file(video, "warm-up")))
    first = time.monotonic() - T0
    for values in recognizer.times.samples.values():
        values.clear()
    pipe = CameraPipeline("bench", recognizer, config)
    frames = iter_file(video, "bench")
    if decode == "outside":
        frames = iter([f for f in frames if f.index < limit])  # type: ignore[assignment]
    events = []
    started = time.monotonic()
    for frame in frames:
        if frame.index >= limit:
            break
        events += pipe.process(frame)
    events += pipe.finish()
    wall = time.monotonic() - started
    print(json.dumps({
        "frames": pipe.frames, "wall_s": wall, "stages": recognizer.times.samples,
        "reads": pipe.reads, "events": [e.plate for e in events],
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_result_s": first, "gated": pipe.gated, "skipped": pipe.skipped,
    }))  # fmt: skip


def streams(videos: list[str], n: int, limit: int, sets: list[str]) -> None:
    """Worker: n cameras replaying the videos (other offsets), decoded up front
    (decode is reported apart), one frame of each per step through `process_many`
    as the daemon's loop does."""
    from alprd import config as cfgmod
    from alprd import log as logmod
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.source import iter_file
    from alprd.pipeline.stream import CameraPipeline, process_many
    from alprd.pipeline.types import Frame

    logmod.configure("console", "warning")
    config = load_config(sets)
    if config.engines.streams == "auto":  # as the daemon resolves it for n cameras
        config.cameras = [
            cfgmod.CameraConfig(name=f"cam{i}", url=videos[i % len(videos)]) for i in range(n)
        ]
    clips, decode_s, decoded = [], 0.0, 0
    for v in videos:
        t = time.perf_counter()
        clip = [f.image for f in iter_file(v, "x") if f.index < limit]
        decode_s += time.perf_counter() - t
        decoded += len(clip)
        clips.append(clip)
    recognizer = Recognizer.load(config)
    as_the_daemon(config, recognizer)
    pipes = [CameraPipeline(f"cam{i}", recognizer, config) for i in range(n)]
    events = []
    started = time.monotonic()
    for step in range(limit):  # one frame of every camera, batched as the daemon's loop does
        batch = []
        for i, pipe in enumerate(pipes):
            clip = clips[i % len(clips)]
            batch.append(
                (pipe, Frame(f"cam{i}", step, step / 25.0, clip[(step + 37 * i) % len(clip)]))
            )
        for found in process_many(recognizer, batch):
            events += found
    for pipe in pipes:
        events += pipe.finish()
    wall = time.monotonic() - started
    print(json.dumps({
        "frames": sum(p.frames for p in pipes), "wall_s": wall,
        "stages": recognizer.times.samples, "reads": sum(p.reads for p in pipes),
        "events": len(events), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gated": sum(p.gated for p in pipes), "skipped": sum(p.skipped for p in pipes),
        "first_result_s": float("nan"), "decode_fps": decoded / decode_s,
    }))  # fmt: skip


STAGES = ("vehicle", "plate", "ocr")


def stage_cells(st: dict[str, list[float]]) -> list[str]:
    return [f"{pct(st[s], 0.5):.0f}/{pct(st[s], 0.99):.0f}" for s in STAGES]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def _run(cmd: list[str]) -> dict:
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed:\n{run.stderr[-3000:]}")
    result: dict = json.loads(run.stdout.strip().splitlines()[-1])
    return result


#: alprd searching and reading every frame, as the naive loop does
SAME_WORK = ["motion.enabled=false", "tracking.recheck_every=1"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--video", action="append", help="video(s); default: all in --videos")
    parser.add_argument("--videos", type=Path, default=VIDEOS)
    parser.add_argument("--frames", type=int, default=250, help="frames of each video to run")
    parser.add_argument("--streams", type=int, default=0, help="also N replayed cameras")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--decode", choices=["inside", "outside", "both"], default="both",
                        help="decode in the timed loop, before it, or a row of each")  # fmt: skip
    parser.add_argument("--naive-python", default=sys.executable)
    parser.add_argument("--worker", choices=["one", "streams"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    videos = args.video or sorted(str(p) for p in args.videos.glob("*.mp4"))
    if args.worker == "one":
        ours(videos[0], args.frames, args.set, "outside" if args.decode == "outside" else "inside")
        return 0
    if args.worker == "streams":
        streams(videos, args.streams, args.frames, args.set)
        return 0
    videos = [v for v in videos if Path(v).is_file()]
    if not videos:
        print(f"no videos at {args.videos}: nothing to measure")
        return 0
    from rich.console import Console
    from rich.table import Table

    config = load_config(args.set)
    m = config.models
    size = m.vehicle.input_size
    naive_args = [
        str(m.vehicle.source), str(m.plate.source), str(m.ocr.source), str(m.ocr.dictionary),
        "--frames", str(args.frames),
        "--vehicle-size", *[str(v) for v in (size if isinstance(size, tuple) else (size,))],
        "--plate-size", str(m.plate.input_size if isinstance(m.plate.input_size, int)
                            else max(m.plate.input_size)),
        "--ocr-height", str(m.ocr.input_height), "--ocr-width", str(m.ocr.input_width or 0),
    ]  # fmt: skip
    if not isinstance(size, int):  # Ultralytics runs a fixed-size ONNX at its own size
        print(f"note: alprd's vehicle input is {size}; the naive loop's vehicle ONNX is "
              "fixed-size, so that row is not the same work")  # fmt: skip
    table = Table(title=f"pipeline ({os.cpu_count()} CPUs) {' '.join(args.set)}")
    cols = ["video", "decode", "loop", "frames/s", "ratio", "vehicle p50/p99 ms",
            "plate p50/p99 ms", "ocr p50/p99 ms", "reads", "events", "still/skipped",
            "peak RSS MB", "first result s"]  # fmt: skip
    for c in cols:
        table.add_column(c, justify="left" if c in ("video", "decode", "loop") else "right")
    decodes = ["inside", "outside"] if args.decode == "both" else [args.decode]
    same = [a for s in [*args.set, *SAME_WORK] for a in ("--set", s)]
    configured = [a for s in args.set for a in ("--set", s)]
    nms = ""
    for video in videos:
        for decode in decodes:
            base = _run([args.naive_python, str(REPO / "benchmarks" / "naive_loop.py"), video,
                         *naive_args, "--decode", decode])  # fmt: skip
            nms = base.get("nms", "")
            rows = {"naive": base}
            for name, sets in (("alprd, same work", same), ("alprd, as configured", configured)):
                rows[name] = _run([sys.executable, "-m", "benchmarks.pipeline", "--worker",
                                   "one", "--video", video, "--frames", str(args.frames),
                                   "--decode", decode, *sets])  # fmt: skip
            base_fps = base["frames"] / base["wall_s"]
            for name, r in rows.items():
                fps = r["frames"] / r["wall_s"]
                events = r.get("events", "")
                table.add_row(
                    Path(video).name, decode, name, f"{fps:.2f}", f"{fps / base_fps:.2f}x",
                    *stage_cells(r["stages"]),
                    str(r["reads"]), ",".join(events) if isinstance(events, list) else str(events),
                    f"{r['gated']}/{r['skipped']}" if "gated" in r else "-",
                    f"{r['rss_mb']:.0f}", f"{r['first_result_s']:.1f}",
                )  # fmt: skip
    if args.streams:
        n = args.streams
        rows = {}
        for name, sets in (("alprd, same work", same), ("alprd, as configured", configured)):
            rows[name] = _run([sys.executable, "-m", "benchmarks.pipeline", "--worker", "streams",
                               "--streams", str(n), "--frames", str(args.frames), *sets,
                               *[a for v in videos for a in ("--video", v)]])  # fmt: skip
        naive = [args.naive_python, str(REPO / "benchmarks" / "naive_loop.py")]
        rows["naive, batched"] = _run([*naive, videos[0], *naive_args, "--cameras", str(n)])
        rows["naive, N processes"] = _processes(
            [[args.naive_python, str(REPO / "benchmarks" / "naive_loop.py"),
              videos[i % len(videos)], *naive_args, "--decode", "outside"] for i in range(n)]
        )  # fmt: skip
        base_fps = max(r["frames"] / r["wall_s"] for k, r in rows.items() if k.startswith("naive"))
        for name, r in rows.items():
            fps = r["frames"] / r["wall_s"]
            table.add_row(
                f"{n} cameras (replays)", "outside", name, f"{fps:.2f}", f"{fps / base_fps:.2f}x",
                *stage_cells(r["stages"]),
                str(r["reads"]), str(r.get("events", "")),
                f"{r['gated']}/{r['skipped']}" if "gated" in r else "-",
                f"{r['rss_mb']:.0f}", "",
            )  # fmt: skip
    Console(width=200).print(table)
    print(
        "ratio: frames/s against the naive loop's in the same rows (cameras: against the "
        "faster naive way). same work: every frame searched and read (motion gating and "
        "per-track skipping off); as configured: alprd's defaults. Both sides warmed up "
        f"untimed; recogniser input {m.ocr.input_height}x{m.ocr.input_width or 'aspect'} on "
        f"both; naive NMS: {nms}; torch {_torch_version(args.naive_python)}."
    )
    return 0


def _processes(commands: list[list[str]]) -> dict:
    """N naive loops at once; frames/s over the slowest one's wall time."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO) for c in commands]  # fmt: skip
    results = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"naive loop failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "frames": sum(r["frames"] for r in results),
        "wall_s": max(r["wall_s"] for r in results),
        "stages": {k: [v for r in results for v in r["stages"][k]] for k in STAGES},
        "reads": sum(r["reads"] for r in results),
        "rss_mb": sum(r["rss_mb"] for r in results),
    }


def _torch_version(python: str) -> str:
    run = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True)  # fmt: skip
    return run.stdout.strip() or "?"


if __name__ == "__main__":
    raise SystemExit(main())
