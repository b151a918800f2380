"""`make bench-gpu`: alprd's GPU mode against the naive Ultralytics loop on the
same NVIDIA card, one run, one stream and N cameras.

Both sides do the same work the same way:
- the same three networks at the same precision on the same card: the naive
  loop (`benchmarks/naive_loop.py`) runs Ultralytics `predict` per frame (the
  default vehicle ONNX's own weights as an Ultralytics `.pt`,
  `alprd.engines.lift`) and per vehicle crop (plate `.pt`), both fp16 on the GPU
  (`--half`), then alprd's recogniser per plate as a plain torch module, fp16 on
  the GPU (`--ocr-backend torch`: no batching, no CUDA graphs). alprd: the torch
  backend (fp16, CUDA graphs, letterbox and crops on the GPU). One reference row
  keeps the naive loop as Ultralytics and ONNX Runtime give it by default (fp32
  detectors, recogniser on the CPU), outside the ratios;
- the same input sizes (vehicle 384x640, plate 416, recogniser 32x128);
- both warmed up untimed on the first frames (10 for one stream, 5 steps for N
  cameras) before their timed loops: Ultralytics' predictor set-up and every
  model's first call on the naive side, CUDA graphs and the settled heap on
  alprd's (what the daemon does once ready);
- frames decoded inside the timed loop (`decode inside`: one frame at a time, as
  a camera delivers them; alprd into page-locked buffers, as its cameras do on a
  GPU) or all before it (`decode outside`), a row of each for one stream; the N
  camera rows decode outside on both sides;
- alprd twice: "same work" (every frame searched and read: motion gating off,
  `tracking.recheck_every = 1`, as the naive loop does) and "as configured"
  (alprd's defaults: motion gating and per-track skipping on).

N cameras: the videos replayed at different offsets (camera i: video i mod 3,
37 i frames in), the first --steps frames of each, one frame of every camera per
step, the same frames for every row. The naive loop two ways: batched (one
`predict` on the N frames, `--cameras N`) and as N processes of one camera each,
started together; ratios are against the faster of the two. alprd: one process,
`CameraPipeline`s batched per step as the daemon does (`Batch`, `Lanes`), one
batch at a time and two in flight (the daemon's default on a GPU).

Decode inside the loop, for each --live camera count (default 16 and 32): the
cameras as the daemon reads them (`CameraReader` threads, every frame kept,
camera i replaying video i mod 3 from its start), decoded on the GPU (NVDEC:
needs PyNvVideoCodec) or by OpenCV, beside the same cameras decoded before the
loop and the naive loop as N processes decoding with OpenCV (with more cameras
than cores, several cameras a process); the process's CPU cores per 100
frames/s and the GPU memory the cameras take. `--only-live`: just those rows.

Needs torch with CUDA, ultralytics and the alprd dependencies; writes the JSON of
every figure to --out when given. --smoke runs the same on the CPU (a check of
this script, not a measurement).
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import DATA, REPO

os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", YOLO_VERBOSE="False")

NAIVE = REPO / "benchmarks" / "naive_loop.py"
STAGES = ("vehicle", "plate", "ocr")
#: untimed warm-up, both sides: frames for one stream, steps for N cameras
WARM_ONE, WARM_MANY = 10, 5


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")


def read_frames(video: Path, limit: int, pinned: bool = False) -> Iterator[Any]:
    """The first `limit` frames of `video`, decoded one at a time. `pinned`: into
    page-locked buffers, as a camera does when the torch backend serves on a GPU
    (`CameraReader(allocate=...)`)."""
    import cv2

    allocate = None
    if pinned:
        from alprd.engines.backends.torch import pinned_frame as allocate
    cap = cv2.VideoCapture(str(video))
    shape = None
    try:
        for _ in range(limit):
            if allocate is not None and shape is not None:
                ok, frame = cap.read(allocate(shape))
            else:
                ok, frame = cap.read()
            if not ok:
                return
            shape = frame.shape
            yield frame
    finally:
        cap.release()


def decode(video: Path, limit: int, pinned: bool = False) -> tuple[list, float]:
    """Frames of `video` in memory, and the decode rate."""
    t = time.perf_counter()
    frames = list(read_frames(video, limit, pinned))
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


def same_work(config: Any) -> Any:
    """alprd searching and reading every frame, as the naive loop does (what
    `benchmarks.pipeline.SAME_WORK` sets): no motion gating, no per-track skipping."""
    config.motion.enabled = False
    config.tracking.recheck_every = 1
    return config


def one_stream(config_path: Path, video: Path, limit: int, same: bool, decoded: str) -> dict:
    """`CameraPipeline` on the first `limit` frames of `video`, decoded inside the
    timed loop or before it; warmed up untimed on its first WARM_ONE frames."""
    import torch

    from alprd import config as cfgmod
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.stream import CameraPipeline
    from alprd.pipeline.types import Frame

    config = cfgmod.load(config_path)
    if same:
        same_work(config)
    recognizer = Recognizer.load(config)
    pinned = torch.cuda.is_available()
    warm = CameraPipeline("warm-up", recognizer, config)
    for i, image in enumerate(read_frames(video, WARM_ONE, pinned)):
        warm.process(Frame("warm-up", i, i / 25.0, image))  # CUDA graphs, cuDNN tuned
    warm.finish()
    settle_heap()  # as the daemon does once ready
    recognizer.times.samples = {k: [] for k in recognizer.times.samples}
    pipe = CameraPipeline("bench", recognizer, config)
    frames = iter(decode(video, limit, pinned)[0]) if decoded == "outside" else None
    events = []
    t = time.perf_counter()
    for i, image in enumerate(frames or read_frames(video, limit, pinned)):
        events += pipe.process(Frame("bench", i, i / 25.0, image))
    events += pipe.finish()
    wall = time.perf_counter() - t
    out = {
        "frames": pipe.frames, "fps": pipe.frames / wall, "reads": pipe.reads,
        "gated": pipe.gated, "skipped": pipe.skipped, "events": [e.plate for e in events],
        "stages": dict(recognizer.times.samples),
    }  # fmt: skip
    recognizer.close()
    return out


def cameras(config_path: Path, clips: list[list], steps: int, n: int, same: bool,
            lanes: int | None, prof: Any = None) -> dict:  # fmt: skip
    """`n` cameras (camera i: clips[i mod len], 37 i frames in), one frame of each
    per step through `CameraPipeline`s batched as the daemon's loop does
    (`Batch.begin`, `Lanes`, `Batch.finish`); `lanes` batches in flight (None:
    the daemon's choice, 2 on a GPU). Warmed up untimed on WARM_MANY steps.
    `prof`: a cProfile.Profile over the timed steps only."""
    from alprd import config as cfgmod
    from alprd.pipeline.lanes import Lanes
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.stream import Batch, CameraPipeline, process_many
    from alprd.pipeline.types import Frame

    config = cfgmod.load(config_path)
    if same:
        same_work(config)
    recognizer = Recognizer.load(config)

    def frame(i: int, step: int) -> Frame:
        clip = clips[i % len(clips)]
        return Frame(f"cam{i}", step, step / 25.0, clip[(step + 37 * i) % len(clip)])

    warm = [CameraPipeline(f"warm{i}", recognizer, config) for i in range(n)]
    for step in range(WARM_MANY):
        process_many(recognizer, [(warm[i], frame(0, step)) for i in range(n)])
    settle_heap()
    recognizer.times.samples = {k: [] for k in recognizer.times.samples}
    pipes = [CameraPipeline(f"cam{i}", recognizer, config) for i in range(n)]
    pool: Lanes[Any] = Lanes(recognizer, lanes or recognizer.lanes())
    events: list = []

    def finished(done: list[tuple[Any, Any]]) -> None:
        for batch, results in done:
            for found in batch.finish(results):
                events.extend(found)

    if prof is not None:
        prof.enable()
    t = time.perf_counter()
    step = 0
    while step < steps or pool.busy:
        if step < steps and pool.free:
            batch = Batch.begin(recognizer, [(pipes[i], frame(i, step)) for i in range(n)])
            step += 1
            if batch.steps is None:  # every frame skipped by motion gating
                finished([(batch, [])])
            else:
                pool.submit(batch.steps, batch)
        if pool.busy:
            finished(pool.step())
    for pipe in pipes:
        events += pipe.finish()
    wall = time.perf_counter() - t
    if prof is not None:
        prof.disable()
    frames = sum(p.frames for p in pipes)
    out = {
        "frames": frames, "fps": frames / wall, "reads": sum(p.reads for p in pipes),
        "gated": sum(p.gated for p in pipes), "skipped": sum(p.skipped for p in pipes),
        "events": len(events), "lanes": len(pool.contexts),
        "stages": dict(recognizer.times.samples),
    }  # fmt: skip
    recognizer.close()
    return out


def live(config_path: Path, videos: list[Path], n: int, steps: int, decoder: str,
         same: bool, prof: Any = None) -> dict:  # fmt: skip
    """`n` cameras as the daemon reads them (`CameraReader` threads, camera i:
    video i mod len, from its start, looping), decoded by `decoder` ("nvdec": on
    the GPU, `alprd.pipeline.nvdec`; "cpu": OpenCV into page-locked buffers), with
    every frame kept (`every_frame`: no frame decoded and dropped, none paced to
    the video's rate), then batched per step as the daemon does. Decode is inside
    the timed loop. Also: the process's CPU time per 100 frames/s, and the GPU
    memory the cameras take (their decoders and frames in flight). `prof`: a
    cProfile.Profile over the timed steps only (the main thread's)."""
    import torch

    from alprd import config as cfgmod
    from alprd.pipeline import nvdec
    from alprd.pipeline.lanes import Lanes
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.source import CameraReader, LatestFrame
    from alprd.pipeline.stream import Batch, CameraPipeline, process_many
    from alprd.pipeline.types import Frame

    config = cfgmod.load(config_path)
    if same:
        same_work(config)
    recognizer = Recognizer.load(config)
    warm = [CameraPipeline(f"warm{i}", recognizer, config) for i in range(n)]
    first = [clip[0] for clip in (decode(v, 1)[0] for v in videos)]
    for step in range(WARM_MANY):  # engines warm before the cameras open
        frames = [Frame("w", step, step / 25.0, first[i % len(first)]) for i in range(n)]
        process_many(recognizer, list(zip(warm, frames, strict=True)))
    gpu = torch.cuda.is_available()
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    free = (lambda: torch.cuda.mem_get_info()[0]) if gpu else (lambda: 0)
    sync()
    free_before = free()
    opener = nvdec.nvdec_opener() if decoder == "nvdec" else None
    readers = []
    for i in range(n):
        slot = LatestFrame()
        readers.append(CameraReader(
            f"cam{i}", str(videos[i % len(videos)]), slot, fps=1000, loop=True,
            every_frame=True, opener=opener, allocate=recognizer.frame_allocator(),
        ))  # fmt: skip
        readers[-1].start()
    pipes = [CameraPipeline(f"cam{i}", recognizer, config) for i in range(n)]

    def take(i: int) -> Frame:
        frame = readers[i].slot.take(timeout=30.0)
        if frame is None:
            raise SystemExit(f"camera {i} gave no frame ({readers[i].state}, {readers[i].decoder})")
        return frame

    pool: Lanes[Any] = Lanes(recognizer, recognizer.lanes())
    events: list = []

    def finished(done: list[tuple[Any, Any]]) -> None:
        for batch, results in done:
            for found in batch.finish(results):
                events.extend(found)

    def run(steps: int, items: list) -> None:
        step = 0
        while step < steps or pool.busy:
            if step < steps and pool.free:
                batch = Batch.begin(recognizer, [(items[i], take(i)) for i in range(n)])
                step += 1
                if batch.steps is None:
                    finished([(batch, [])])
                else:
                    pool.submit(batch.steps, batch)
            if pool.busy:
                finished(pool.step())

    run(WARM_MANY, warm)  # the decoders' first frames, untimed
    sync()
    cameras_bytes = free_before - free()
    settle_heap()
    recognizer.times.samples = {k: [] for k in recognizer.times.samples}
    if prof is not None:
        prof.enable()
    cpu, t = time.process_time(), time.perf_counter()
    run(steps, pipes)
    for pipe in pipes:
        events += pipe.finish()
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    if prof is not None:
        prof.disable()
    decoders = sorted({r.decoder for r in readers})
    for r in readers:
        r.stop()
    for r in readers:
        r.join(timeout=5)
    frames = sum(p.frames for p in pipes)
    fps = frames / wall
    out = {
        "frames": frames, "fps": fps, "reads": sum(p.reads for p in pipes),
        "gated": sum(p.gated for p in pipes), "skipped": sum(p.skipped for p in pipes),
        "events": len(events), "lanes": len(pool.contexts), "decoders": decoders,
        "cpu_cores": cpu / wall, "cores_per_100fps": cpu / wall / (fps / 100),
        "gpu_mb_per_camera": cameras_bytes / n / 2**20,
        "stages": dict(recognizer.times.samples),
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
    from alprd.pipeline.lanes import Lanes
    from alprd.pipeline.recognizer import Recognizer

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


def naive_vehicle(root: Path, args: argparse.Namespace) -> Path:
    """The vehicle ONNX's weights as an Ultralytics .pt (the naive loop's model)."""
    import torch

    from alprd.engines import lift

    lifted = lift.yolo_from_onnx(REPO / "models" / args.vehicle)
    model = lifted.module
    model.names = lifted.names
    model.args = {"imgsz": 640, "task": "detect"}
    vehicle_pt = root / "vehicle-naive.pt"
    torch.save({"model": model, "train_args": dict(model.args)}, vehicle_pt)
    return vehicle_pt


def naive_args(config_path: Path, vehicle_pt: Path, args: argparse.Namespace) -> list[str]:
    """The naive loop's models and input sizes, those of alprd's config."""
    from alprd import config as cfgmod

    m = cfgmod.load(config_path).models
    size = m.vehicle.input_size
    plate = m.plate.input_size
    return [
        str(vehicle_pt), str(REPO / "models" / args.plate), str(REPO / "models" / args.ocr),
        str(REPO / "models" / args.dictionary),
        "--vehicle-size", *[str(v) for v in (size if isinstance(size, tuple) else (size,))],
        "--plate-size", str(plate if isinstance(plate, int) else max(plate)),
        "--ocr-height", str(m.ocr.input_height), "--ocr-width", str(m.ocr.input_width or 0),
    ]  # fmt: skip


def fair_flags(smoke: bool) -> list[str]:
    """The naive loop on the GPU, fp16, recogniser there too (CPU, fp32 in --smoke)."""
    device = ["--device", "cpu"] if smoke else ["--device", "cuda:0", "--half"]
    return [*device, "--ocr-backend", "torch"]


def naive(video: Path, common: list[str], *extra: str) -> dict:
    """One naive loop, in a child process."""
    run = subprocess.run([sys.executable, str(NAIVE), str(video), *common, *extra],
                         capture_output=True, text=True, cwd=REPO)  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"naive loop failed:\n{run.stderr[-3000:]}")
    r: dict = json.loads(run.stdout.strip().splitlines()[-1])
    r["fps"] = r["frames"] / r["wall_s"]
    return r


def naive_processes(root: Path, videos: list[Path], common: list[str], n: int) -> dict:
    """`n` naive loops at once, each one camera of the same set as the batched
    loop (`--first-camera`), released together once all are warm and decoded:
    frames/s of all together, from the first start to the last end. More cameras
    than CPU cores: as many processes as cores, each with several cameras (32
    processes of CUDA and Ultralytics each do not fit a 16-core host)."""
    go = root / "go"
    per = -(-n // (os.cpu_count() or n))  # more cameras than cores: several a process
    n, cameras = n // per, n
    threads = str(max(1, (os.cpu_count() or n) // n))  # n processes share the cores
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    more = ["--more-videos", *[str(v) for v in videos[1:]]] if len(videos) > 1 else []
    procs = [
        subprocess.Popen(
            [sys.executable, str(NAIVE), str(videos[0]), *common, *more, "--cameras", str(per),
             "--first-camera", str(k * per), "--go", str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        )
        for k in range(n)
    ]  # fmt: skip
    deadline = time.monotonic() + 600
    while len(list(root.glob("go.*.ready"))) < n:
        failed = [p for p in procs if p.poll() is not None]
        if failed or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            err = failed[0].communicate()[1][-3000:] if failed else "timed out"
            raise SystemExit(f"naive loop failed:\n{err}")
        time.sleep(0.05)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"naive loop failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    frames = sum(r["frames"] for r in results)
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    cpu = sum(r.get("cpu_s", 0.0) for r in results)
    return {
        "frames": frames, "wall_s": wall, "fps": frames / wall, "processes": n,
        "cameras": cameras,
        "stages": {k: [v for r in results for v in r["stages"][k]] for k in STAGES},
        "reads": sum(r["reads"] for r in results),
        "cpu_cores": cpu / wall, "cores_per_100fps": cpu / wall / (frames / wall / 100),
    }  # fmt: skip


def progress(section: str, rows: dict) -> None:
    """The latest row, as soon as it is measured (stderr)."""
    name, r = list(rows.items())[-1]
    print(f"{section}: {name}: {r['fps']:.1f} frames/s", file=sys.stderr, flush=True)


def row(section: str, decoded: str, name: str, r: dict, base: float) -> str:
    st = r.get("stages") or {}
    stages = " ".join(
        f"{pct(st.get(s, []), 0.5):>6.1f}/{pct(st.get(s, []), 0.99):<6.1f}" for s in STAGES
    )
    still = f"{r['gated']}/{r['skipped']}" if "gated" in r else "-"
    return (f"{section:11} {decoded:7} {name:50} {r['fps']:8.1f} {r['fps'] / base:6.2f}x "
            f"{stages} {r.get('reads', ''):>6} {still:>9}")  # fmt: skip


HEADER = (f"{'':11} {'decode':7} {'loop':50} {'frames/s':>8} {'ratio':>7} "
          f"{'vehicle p50/p99':>13} {'plate p50/p99':>13} {'ocr p50/p99':>13} "
          f"{'reads':>6} {'still/skip':>9}")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--videos", type=Path, default=DATA / "videos")
    p.add_argument("--frames", type=int, default=249, help="frames of the one-stream video")
    p.add_argument("--streams", type=int, default=16, help="cameras")
    p.add_argument("--steps", type=int, default=100, help="frames of each camera")
    p.add_argument("--vehicle", default="vehicle-yolov8n-coco.onnx")
    p.add_argument("--plate", default="plate-yolov8n.pt")
    p.add_argument("--ocr", default="trained/ocr-alprd-plate.onnx")
    p.add_argument("--dictionary", default="trained/ocr-alprd-plate-dict.txt")
    p.add_argument("--ocr-backend", default="torch", help="onnxruntime: the recogniser on the CPU")
    p.add_argument("--only-streams", action="store_true", help="skip the one-stream rows")
    p.add_argument(
        "--live",
        type=int,
        nargs="*",
        default=[16, 32],
        help="camera counts for the rows with decode inside the loop (NVDEC, OpenCV, naive)",
    )
    p.add_argument(
        "--only-live", action="store_true", help="only the rows with decode inside the loop"
    )
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the naive loop on Ultralytics' and ONNX Runtime's defaults",
    )
    p.add_argument(
        "--lanes",
        type=int,
        nargs="*",
        default=[],
        help="also alprd's recogniser alone (no tracking) on the cameras, this many batches in "
        "flight, all cameras per batch and split between the lanes (outside the ratios)",
    )
    p.add_argument(
        "--processes",
        type=int,
        nargs="*",
        default=[],
        help="also alprd's recogniser alone on the cameras split over this many processes",
    )
    p.add_argument("--out", type=Path)
    p.add_argument("--smoke", action="store_true", help="run on the CPU (a check)")
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.smoke:
        print("no CUDA device: bench-gpu measures the GPU mode only")
        return 0
    from alprd import log as logmod

    logmod.configure("console", "warning")
    videos = sorted(args.videos.glob("*.mp4"))
    pinned = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name() if pinned else "none (smoke)"
    results: dict = {"gpu": gpu, "torch": torch.__version__, "one": {}, "many": {}, "extra": {},
                     "live": {}}  # fmt: skip
    for video in videos:
        results.setdefault("decode_fps", {})[video.name] = decode(video, 10_000, pinned)[1]
    fair = fair_flags(args.smoke)
    try:
        measure(args, results, videos, fair)
    except KeyboardInterrupt:  # stopped early: what was measured so far
        print("interrupted: partial results", file=sys.stderr)
    report(results, args)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


def measure(args: argparse.Namespace, results: dict, videos: list[Path], fair: list[str]) -> None:
    """Every row into `results`, in order; the reference row last."""
    import torch

    rear = args.videos / "rear-nl-L417VS.mp4"
    pinned = torch.cuda.is_available()
    n = args.streams
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # one config for every row: a batch of one frame pads to the same sizes
        # (powers of two) whatever the largest batch configured
        config = site(root, args, n)
        common = naive_args(config, naive_vehicle(root, args), args)
        measure_live(args, results, root, videos, common, fair)
        if args.only_live:
            return
        one_rows = results["one"]
        if not args.only_streams:
            frames = ["--frames", str(args.frames), "--warmup", str(WARM_ONE)]
            for decoded in ("inside", "outside"):
                rows = one_rows[decoded] = {}
                rows["naive"] = naive(rear, common, *frames, *fair, "--decode", decoded)
                progress(decoded, rows)
                for name, same in (("alprd, same work", True), ("alprd, as configured", False)):
                    rows[name] = one_stream(config, rear, args.frames, same, decoded)
                    progress(decoded, rows)
        steps = ["--frames", str(args.steps), "--warmup", str(WARM_MANY), "--decode", "outside"]
        rows = results["many"]
        more = ["--more-videos", *[str(v) for v in videos[1:]]] if len(videos) > 1 else []
        rows["naive, batched (predict on N frames)"] = naive(
            videos[0], common, *steps, *fair, *more, "--cameras", str(n)
        )
        progress("cameras", rows)
        rows["naive, N processes"] = naive_processes(root, videos, [*common, *steps, *fair], n)
        progress("cameras", rows)
        clips = [decode(v, args.steps, pinned)[0] for v in videos]
        for name, same, lanes in (
            ("alprd, same work, one batch at a time", True, 1),
            ("alprd, same work, daemon default", True, None),
            ("alprd, as configured, daemon default", False, None),
        ):
            rows[name] = cameras(config, clips, args.steps, n, same, lanes)
            name_lanes = rows[name]["lanes"]
            if lanes is None:
                rows[f"{name} ({name_lanes} in flight)"] = rows.pop(name)
            progress("cameras", rows)
        extra = results["extra"]
        streams = []
        for i in range(n):  # the same cameras, as `many_streams` takes them
            clip = clips[i % len(clips)]
            offset = (i * 37) % len(clip)
            streams.append(clip[offset:] + clip[:offset])
        for lanes in args.lanes:
            for split in (False, True):
                name = f"recogniser alone, {lanes} lanes" + (", split" if split else "")
                cfg = site(root, args, n // lanes) if split else config
                extra[name] = many_streams(cfg, streams, args.steps, lanes=lanes, split=split)
        for k in args.processes:
            extra[f"recogniser alone, {k} processes"] = processes(
                root, args, videos, k, n, args.steps
            )
        if not args.only_streams and not args.no_reference:  # last: outside the ratios
            one_rows["outside"]["naive, Ultralytics/ONNX Runtime defaults"] = naive(
                rear, common, *frames, "--decode", "outside"
            )
            progress("outside", one_rows["outside"])


OUTSIDE = "alprd, same work, frames decoded before the loop"
LIVE = (
    ("alprd, same work, decode on the CPU (OpenCV)", "cpu", True),
    ("alprd, same work, decode on the GPU (NVDEC)", "nvdec", True),
    ("alprd, as configured, decode on the GPU (NVDEC)", "nvdec", False),
)


def measure_live(args: argparse.Namespace, results: dict, root: Path, videos: list[Path],
                 common: list[str], fair: list[str]) -> None:  # fmt: skip
    """The rows with decode inside the timed loop, for each --live camera count:
    the naive loop as N processes, each decoding its camera with OpenCV, and
    alprd's cameras (`live`) decoding on the CPU and on the GPU; beside them the
    same work on frames decoded before the loop. A row that fails is recorded with
    its error, and the others still run."""
    import torch

    for n in args.live:
        rows = results["live"][str(n)] = {}
        config = site(root, args, n)
        steps = ["--frames", str(args.steps), "--warmup", str(WARM_MANY), "--decode", "inside"]
        try:
            rows["naive, N processes, decode with OpenCV"] = naive_processes(
                root, videos, [*common, *steps, *fair], n
            )
            progress(f"{n} cameras, decode inside", rows)
        except (SystemExit, Exception) as exc:
            print(f"naive, {n} processes failed: {exc}", file=sys.stderr)
        try:  # the same cameras' frames decoded before the loop (decode excluded)
            clips = [decode(v, args.steps, torch.cuda.is_available())[0] for v in videos]
            rows[OUTSIDE] = cameras(config, clips, args.steps, n, True, None)
            progress(f"{n} cameras, decoded before", rows)
        except (SystemExit, Exception) as exc:
            print(f"{OUTSIDE} failed: {exc!r}", file=sys.stderr)
        for name, decoder, same in LIVE:
            try:
                rows[name] = live(config, videos, n, args.steps, decoder, same)
                progress(f"{n} cameras, decode inside", rows)
            except (SystemExit, Exception) as exc:
                print(f"{name} failed: {exc!r}", file=sys.stderr)
                rows[name] = {"error": repr(exc)}


def report_live(results: dict) -> list[str]:
    """The decode-inside rows; their headline lines."""
    headline = []
    for n, rows in results.get("live", {}).items():
        base = rows.get("naive, N processes, decode with OpenCV", {}).get("fps")
        cpu = rows.get(LIVE[0][0], {}).get("cores_per_100fps")
        for name, r in rows.items():
            if "error" in r:
                print(f"{n + ' cameras':11} inside  {name:50} failed: {r['error']}")
                continue
            decoded = "outside" if name == OUTSIDE else "inside"
            extra = ""
            if "cpu_cores" in r:
                extra += (f"  CPU cores {r['cpu_cores']:.1f}, "
                          f"per 100 frames/s {r['cores_per_100fps']:.2f}")  # fmt: skip
            if "gpu_mb_per_camera" in r:
                extra += (f", GPU {r['gpu_mb_per_camera']:.0f} MB a camera "
                          f"({'/'.join(r['decoders'])})")  # fmt: skip
            print(row(f"{n} cameras", decoded, name, r, base or r["fps"]) + extra)
            if name.startswith("alprd") and base:
                line = (
                    f"{n} cameras, decode {decoded}, {name[7:]}: {r['fps']:.0f} frames/s, "
                    f"{r['fps'] / base:.2f}x the naive loop (N processes, OpenCV)"
                )
                if cpu and "NVDEC" in name:
                    line += (
                        f"; CPU per 100 frames/s {cpu / r['cores_per_100fps']:.1f}x lower "
                        "than decoding on the CPU"
                    )
                headline.append(line)
    return headline


def report(results: dict, args: argparse.Namespace) -> None:
    print(f"GPU: {results['gpu']} (torch {results['torch']}, {os.cpu_count()} CPUs)")
    print("decode fps, one core: " + ", ".join(
        f"{k} {v:.0f}" for k, v in results["decode_fps"].items()))  # fmt: skip
    print(HEADER)
    headline = []
    for decoded, rows in results["one"].items():
        if "naive" not in rows:
            continue
        base = rows["naive"]["fps"]
        for name, r in rows.items():
            print(row("one stream", decoded, name, r, base))
        for name in ("alprd, same work", "alprd, as configured"):
            if name in rows:
                headline.append(f"one stream, decode {decoded}, {name[7:]}: "
                            f"{rows[name]['fps'] / base:.2f}x")  # fmt: skip
    rows = results["many"]
    naive_rows = {k: r["fps"] for k, r in rows.items() if k.startswith("naive")}
    if naive_rows:
        faster = max(naive_rows, key=naive_rows.__getitem__)
        base = naive_rows[faster]
        for name, r in rows.items():
            print(row(f"{args.streams} cameras", "outside", name, r, base))
        for name, r in rows.items():
            if name.startswith("alprd"):
                headline.append(f"{args.streams} cameras, {name[7:]}: {r['fps'] / base:.2f}x "
                                f"against {faster}")  # fmt: skip
    headline += report_live(results)
    for name, r in results["extra"].items():
        print(f"{name} (outside the ratios): {r['fps']:.1f} frames/s, "
              f"{r.get('plates_read', '')} plates read")  # fmt: skip
    for rows in results["one"].values():
        for name, r in rows.items():
            if "events" in r:
                print(f"{name} events: {r['events']}")
        break
    print("ratio: frames/s against the naive loop of the same rows (one stream: same decode; "
          "cameras: the faster naive way). same work: every frame searched and read (motion "
          "gating and per-track skipping off); as configured: alprd's defaults. The naive "
          "loop: detectors and recogniser fp16 on the GPU (the defaults row: fp32 detectors, "
          "recogniser on ONNX Runtime's CPU provider). Both warmed up untimed.")  # fmt: skip
    print("headline ratios:")
    for line in headline:
        print(f"  {line}")


if __name__ == "__main__":
    raise SystemExit(main())
