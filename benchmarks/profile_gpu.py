"""Where the time of the GPU mode's N-stream loop goes: a cProfile of
`benchmarks.gpu.many_streams` (16 cameras batched), top functions by own time.
With --live N: N cameras decoded inside the loop (NVDEC or OpenCV) as the daemon
reads them. With --cameras: the daemon's loop instead (`benchmarks.gpu.cameras`: tracking,
voting, motion gating), "same work" and "as configured" one after the other.
Run where `make bench-gpu` runs: python -m benchmarks.profile_gpu."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

from benchmarks import gpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--videos", type=Path, default=gpu.DATA / "videos")
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--ocr-backend", default="torch")
    p.add_argument(
        "--kernels",
        action="store_true",
        help="torch.profiler instead of cProfile: host and device time per op",
    )
    p.add_argument(
        "--cameras",
        action="store_true",
        help="the daemon's N-camera loop, same work and as configured, each under cProfile",
    )
    p.add_argument(
        "--live",
        type=int,
        metavar="N",
        help="N cameras read as the daemon reads them (decode inside, --decoder), same work",
    )
    p.add_argument("--decoder", default="nvdec", choices=("nvdec", "cpu"))
    args = p.parse_args()
    import torch

    from alprd import log as logmod

    logmod.configure("console", "warning")
    ns = argparse.Namespace(
        vehicle="vehicle-yolov8n-coco.onnx", plate="plate-yolov8n.pt",
        ocr="trained/ocr-alprd-plate.onnx", dictionary="trained/ocr-alprd-plate-dict.txt",
        ocr_backend=args.ocr_backend,
    )  # fmt: skip
    if args.live:  # decode inside the loop: no clips decoded first
        with tempfile.TemporaryDirectory() as tmp:
            videos = sorted(args.videos.glob("*.mp4"))
            config = gpu.site(Path(tmp), ns, args.live)
            gpu.live(config, videos, args.live, 5, args.decoder, True)  # its engines built
            prof = cProfile.Profile()
            r = gpu.live(config, videos, args.live, args.steps, args.decoder, True, prof)
            print(f"== {args.live} cameras, {args.decoder}: {r['fps']:.1f} frames/s over "
                  f"{r['frames']} frames (profiled), {r['cpu_cores']:.2f} cores")  # fmt: skip
            pstats.Stats(prof).sort_stats("tottime").print_stats(45)
            pstats.Stats(prof).sort_stats("cumulative").print_stats("alprd", 45)
            return 0
    pinned = torch.cuda.is_available()
    clips = [gpu.decode(v, 300, pinned)[0] for v in sorted(args.videos.glob("*.mp4"))]
    streams = []
    for i in range(args.streams):  # as bench-gpu: the clips replayed at other offsets
        clip = clips[i % len(clips)]
        offset = (i * 37) % len(clip)
        streams.append(clip[offset:] + clip[:offset])
    with tempfile.TemporaryDirectory() as tmp:
        config = gpu.site(Path(tmp), ns, args.streams)
        gpu.many_streams(config, streams, 5)  # engines built
        if args.cameras:
            for name, same in (("same work", True), ("as configured", False)):
                prof = cProfile.Profile()
                r = gpu.cameras(config, clips, args.steps, args.streams, same, None, prof)
                stages = {k: f"{len(v)} x, {sum(v):.2f} s" for k, v in r["stages"].items() if v}
                print(f"== {name}: {r['fps']:.1f} frames/s over {r['frames']} frames "
                      f"(profiled); {r['reads']} reads, {r['gated']} gated, "
                      f"{r['skipped']} skipped; stages {stages}")  # fmt: skip
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
                pstats.Stats(prof).sort_stats("cumulative").print_stats("alprd", 30)
            return 0
        if args.kernels:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
            kprof = profile(activities=activities)
            kprof.enable, kprof.disable = kprof.start, kprof.stop  # as cProfile's
            r = gpu.many_streams(config, streams, args.steps, kprof)
            print(f"{r['fps']:.1f} frames/s over {r['frames']} frames (profiled)")
            table = kprof.key_averages().table
            print(table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=50))
            print(table(sort_by="self_cuda_time_total", row_limit=20, max_name_column_width=50))
            return 0
        prof = cProfile.Profile()
        r = gpu.many_streams(config, streams, args.steps, prof)
    print(f"{r['fps']:.1f} frames/s over {r['frames']} frames (profiled)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(40)
    pstats.Stats(prof).sort_stats("cumulative").print_stats("alprd|ops|torch/nn/functional", 40)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
