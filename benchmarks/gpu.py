"""`make bench-gpu`: alprd's GPU mode against the naive Ultralytics loop on the
same NVIDIA card, one run, and the multi-camera throughput.

Measures, side by side:
- decode: frames/s OpenCV decodes the videos at (excluded from the rest: frames
  are decoded into memory first);
- naive loop: `benchmarks/naive_loop.py` on the GPU (Ultralytics `predict` per
  frame and per vehicle crop, the recogniser per plate on ONNX Runtime). The
  vehicle model is the default ONNX's own weights as an Ultralytics `.pt`
  (`alprd.engines.lift`), so both sides run the same three networks;
- alprd, one stream: `CameraPipeline` on the rear-view video with the torch
  backend (fp16, CUDA graphs, letterbox on the GPU): every frame searched and
  read (per-track skipping and motion gating off), and as configured by default
  (both on); the speed ratio against the naive loop;
- alprd, N streams: `Recognizer.many` on N frames at a time (N cameras replaying
  the videos at different offsets), every stage batched across cameras, no
  skipping: frames/s through vehicles + plates + OCR, stage p50/p99.

Needs torch with CUDA, ultralytics and the alprd dependencies; writes the JSON of
every figure to --out when given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", YOLO_VERBOSE="False")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ALPRD_TEST_DATA") or REPO.parent / "shared" / "data")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")


def decode(video: Path, limit: int, pinned: bool = False) -> tuple[list, float]:
    """Frames of `video` in memory, and the decode rate. `pinned`: decoded into
    page-locked buffers, as a camera does when the torch backend serves on a GPU
    (`CameraReader(allocate=...)`)."""
    import cv2

    allocate = None
    if pinned:
        from alprd.engines.backends.torch import pinned_frame as allocate
    cap = cv2.VideoCapture(str(video))
    frames: list = []
    t = time.perf_counter()
    while len(frames) < limit:
        if allocate is not None and frames:
            ok, frame = cap.read(allocate(frames[0].shape))
        else:
            ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    return frames, len(frames) / (time.perf_counter() - t)


def site(root: Path, args: argparse.Namespace, batch: int) -> Path:
    """A config with its own models dir (engines of one batch size each): `batch`
    frames per vehicle batch; up to 4 vehicles (plates) per frame in one plate
    (OCR) batch (the torch backend pads to powers of two up to that, not to it)."""
    crops = min(64, 4 * batch)
    models = root / f"models-b{batch}"
    models.mkdir(parents=True, exist_ok=True)
    m = REPO / "models"
    for name in (args.vehicle, args.plate, args.ocr, args.dictionary):
        if not (models / name).exists():
            (models / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(m / name, models / name)
    config = root / f"alprd-b{batch}.toml"
    config.write_text(
        f'[paths]\nroot = "{root}"\nmodels_dir = "{models}"\n'
        '[engines]\nbackend = "torch"\nprecision = "fp16"\n'
        f'[models.vehicle]\nsource = "{args.vehicle}"\ninput_size = [384, 640]\n'
        f"batch_size = {batch}\n"
        f'[models.plate]\nsource = "{args.plate}"\nbatch_size = {crops}\n'
        f'[models.ocr]\nsource = "{args.ocr}"\ndictionary = "{args.dictionary}"\n'
        f'backend = "{args.ocr_backend}"\nbatch_size = {crops}\n'
    )
    return config


def settle_heap() -> None:
    """What the daemon does once ready (`alprd.service._settle_heap`; not imported:
    the service pulls in the output sinks' dependencies)."""
    import gc

    gc.collect()
    gc.freeze()


def one_stream(config_path: Path, frames: list, skipping: bool) -> dict:
    from alprd import config as cfgmod
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.stream import CameraPipeline
    from alprd.pipeline.types import Frame

    config = cfgmod.load(config_path)
    if not skipping:  # every frame searched and read, as the naive loop does
        config.tracking.decided_after = 10**9  # never decided: no per-track skipping
        config.motion.enabled = False
    recognizer = Recognizer.load(config)
    pipe = CameraPipeline("bench", recognizer, config)
    for i, image in enumerate(frames[:10]):  # CUDA graphs captured, cuDNN tuned
        pipe.process(Frame("bench", i, i / 25.0, image))
    pipe.finish()
    settle_heap()  # as the daemon does once ready
    recognizer.times.samples = {k: [] for k in recognizer.times.samples}
    pipe = CameraPipeline("bench", recognizer, config)
    events = []
    t = time.perf_counter()
    for i, image in enumerate(frames):
        events += pipe.process(Frame("bench", i, i / 25.0, image))
    events += pipe.finish()
    wall = time.perf_counter() - t
    out = {
        "frames": len(frames), "fps": len(frames) / wall, "reads": pipe.reads,
        "events": [e.plate for e in events], "stages": dict(recognizer.times.samples),
    }  # fmt: skip
    recognizer.close()
    return out


def many_streams(config_path: Path, streams: list[list], steps: int, prof: Any = None,
                 lanes: int = 1, split: bool = False) -> dict:  # fmt: skip
    """N cameras batched: `steps` batches of one frame of each. `prof`: a
    cProfile.Profile to run over the timed batches only (not loading, not warm-up).
    `lanes`: batches in flight at once (`Lanes`): with `split`, each lane has its
    own cameras (N / lanes per batch, what the daemon does: a camera has one frame
    in flight); else every lane batches all N (frame k in one, k + 1 in the next)."""
    import torch

    from alprd import config as cfgmod
    from alprd.pipeline.recognizer import Lanes, Recognizer

    recognizer = Recognizer.load(cfgmod.load(config_path))
    n = len(streams)
    groups = [list(range(k, n, lanes)) for k in range(lanes)] if split else [list(range(n))]
    batch = [s[0] for s in streams]
    for _ in range(5):
        recognizer.many(batch)
    settle_heap()  # as the daemon does once ready
    recognizer.times.samples = {k: [] for k in recognizer.times.samples}
    plates = 0
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    work = [(step, g) for step in range(steps) for g in groups]  # batches, in order
    pool: Lanes[list] = Lanes(recognizer, lanes)
    sync()
    if prof is not None:
        prof.enable()
    t = time.perf_counter()
    frames = 0
    while work or pool.busy:
        while work and pool.free:
            step, cams = work.pop(0)
            pool.submit(recognizer.steps([streams[c][step % len(streams[c])] for c in cams]))
            frames += len(cams)
        for _, results in pool.step():
            plates += sum(len(r.plates) for r in results)
    sync()
    wall = time.perf_counter() - t
    if prof is not None:
        prof.disable()
    out = {
        "streams": n, "frames": frames, "fps": frames / wall, "plates_read": plates,
        "lanes": lanes, "split": split, "stages": dict(recognizer.times.samples),
    }  # fmt: skip
    recognizer.close()
    return out


def _worker(
    config_path: Path,
    videos: list[Path],
    cameras: list[int],
    total: int,
    steps: int,
    barrier: Any,
    out: Any,
) -> None:
    """One process of `processes`: its share of the cameras, batched."""
    import torch

    from alprd import config as cfgmod
    from alprd import log as logmod
    from alprd.pipeline.recognizer import Recognizer

    logmod.configure("console", "warning")
    clips = [decode(v, 10_000, pinned=torch.cuda.is_available())[0] for v in videos]
    streams = []
    for i in cameras:  # the same cameras as `many_streams`' i-th
        clip = clips[i % len(clips)]
        offset = (i * 37) % len(clip)
        streams.append(clip[offset:] + clip[:offset])
    recognizer = Recognizer.load(cfgmod.load(config_path))
    batch = [s[0] for s in streams]
    for _ in range(5):
        recognizer.many(batch)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    barrier.wait()
    t = time.perf_counter()
    plates = 0
    for step in range(steps):
        batch = [s[step % len(s)] for s in streams]
        plates += sum(len(r.plates) for r in recognizer.many(batch))
    sync()
    out.put((len(streams) * steps, plates, t, time.perf_counter()))
    recognizer.close()


def processes(
    root: Path, args: argparse.Namespace, videos: list[Path], n: int, total: int, steps: int
) -> dict:
    """`total` cameras split over `n` processes sharing the GPU (each its own
    engines and CUDA context, batching its cameras): frames/s of all together."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    per = total // n
    config = site(root, args, per)
    warm_barrier, warm_out = ctx.Barrier(1), ctx.Queue()
    warm = ctx.Process(target=_worker, args=(
        config, videos, list(range(per)), total, 1, warm_barrier, warm_out))  # fmt: skip
    warm.start()  # engines built once, before the timed processes
    warm_out.get(timeout=600)
    warm.join()
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(
        config, videos, list(range(k * per, (k + 1) * per)), total, steps, barrier, out))
        for k in range(n)]  # fmt: skip
    for p in procs:
        p.start()
    got = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    frames = sum(g[0] for g in got)
    wall = max(g[3] for g in got) - min(g[2] for g in got)
    return {"processes": n, "streams": per * n, "frames": frames, "fps": frames / wall,
            "plates_read": sum(g[1] for g in got), "stages": {}}  # fmt: skip


def naive(root: Path, args: argparse.Namespace, video: Path) -> dict:
    """The naive loop in a child process on the same GPU, with the vehicle ONNX's
    weights as an Ultralytics .pt."""
    import torch

    from alprd.engines import lift

    lifted = lift.yolo_from_onnx(REPO / "models" / args.vehicle)
    model = lifted.module
    model.names = lifted.names
    model.args = {"imgsz": 640, "task": "detect"}
    vehicle_pt = root / "vehicle-naive.pt"
    torch.save({"model": model, "train_args": dict(model.args)}, vehicle_pt)
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "naive_loop.py"), str(video), str(vehicle_pt),
         str(REPO / "models" / args.plate), str(REPO / "models" / args.ocr),
         str(REPO / "models" / args.dictionary), str(args.frames), "32", "128"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    r = json.loads(run.stdout.strip().splitlines()[-1])
    r["fps"] = r["frames"] / r["wall_s"]
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--videos", type=Path, default=DATA / "videos")
    p.add_argument("--frames", type=int, default=249)
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--steps", type=int, default=100, help="batches of --streams frames")
    p.add_argument("--vehicle", default="vehicle-yolov8n-coco.onnx")
    p.add_argument("--plate", default="plate-yolov8n.pt")
    p.add_argument("--ocr", default="trained/ocr-alprd-plate.onnx")
    p.add_argument("--dictionary", default="trained/ocr-alprd-plate-dict.txt")
    p.add_argument("--ocr-backend", default="torch", help="onnxruntime: the recogniser on the CPU")
    p.add_argument(
        "--processes",
        type=int,
        nargs="*",
        default=[],
        help="also run the --streams cameras split over this many processes",
    )
    p.add_argument("--only-streams", action="store_true", help="skip the one-stream rows")
    p.add_argument(
        "--lanes",
        type=int,
        nargs="*",
        default=[2],
        help="also run the --streams cameras with this many batches in flight",
    )
    p.add_argument("--out", type=Path)
    p.add_argument("--smoke", action="store_true", help="run on the CPU, no naive loop (a check)")
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.smoke:
        print("no CUDA device: bench-gpu measures the GPU mode only")
        return 0
    from alprd import log as logmod

    logmod.configure("console", "warning")
    rear = args.videos / "rear-nl-L417VS.mp4"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (smoke)"
    results: dict = {"gpu": gpu, "torch": torch.__version__}
    clips = {}
    for video in sorted(args.videos.glob("*.mp4")):
        clips[video.name], fps = decode(video, 10_000, pinned=torch.cuda.is_available())
        results.setdefault("decode_fps", {})[video.name] = fps
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        quick = args.smoke or args.only_streams
        results["naive"] = naive(root, args, rear) if not quick else {"fps": 1.0, "stages": {}}
        one = site(root, args, 1)
        frames = clips[rear.name][: args.frames]
        rows = ["naive", "alprd_every_frame", "alprd_default", "alprd_streams"]
        if not args.only_streams:
            results["alprd_default"] = one_stream(one, frames, skipping=True)
            results["alprd_every_frame"] = one_stream(one, frames, skipping=False)
        else:
            rows = ["alprd_streams"]
        streams = []
        names = sorted(clips)
        for i in range(args.streams):  # cameras replaying the clips at other offsets
            clip = clips[names[i % len(names)]]
            offset = (i * 37) % len(clip)
            streams.append(clip[offset:] + clip[:offset])
        many = site(root, args, args.streams)
        results["alprd_streams"] = many_streams(many, streams, args.steps)
        for lanes in args.lanes:
            for split in (False, True):
                name = f"alprd_streams_{lanes}_lanes" + ("_split" if split else "")
                cfg = site(root, args, args.streams // lanes) if split else many
                results[name] = many_streams(cfg, streams, args.steps, lanes=lanes, split=split)
                rows.append(name)
        videos = sorted(args.videos.glob("*.mp4"))
        for n in args.processes:
            name = f"alprd_streams_{n}_processes"
            results[name] = processes(root, args, videos, n, args.streams, args.steps)
            rows.append(name)
    naive_fps = results["naive"]["fps"]
    print(f"GPU: {results['gpu']} (torch {results['torch']})")
    print("decode fps (excluded below): " + ", ".join(
        f"{k} {v:.0f}" for k, v in results["decode_fps"].items()))  # fmt: skip
    print(f"{'':32} {'frames/s':>9} {'ratio':>6} {'vehicle p50/p99':>16} "
          f"{'plate p50/p99':>14} {'ocr p50/p99':>12} {'reads':>6}")  # fmt: skip
    for name in rows:
        r = results[name]
        st = r["stages"] or {"vehicle": [], "plate": [], "ocr": []}
        stages = " ".join(
            f"{pct(st[s], 0.5):>7.1f}/{pct(st[s], 0.99):<7.1f}" for s in ("vehicle", "plate", "ocr")
        )
        reads = r.get("reads", r.get("plates_read", ""))
        print(f"{name:32} {r['fps']:9.1f} {r['fps'] / naive_fps:5.1f}x {stages} {reads:>6}")
    if "alprd_default" in results:
        print(f"alprd events (default): {results['alprd_default']['events']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
