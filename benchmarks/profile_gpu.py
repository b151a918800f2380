"""Where the time of the GPU mode's N-stream loop goes: a cProfile of
`benchmarks.gpu.many_streams` (16 cameras batched), top functions by own time.
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
    args = p.parse_args()
    import torch

    from alprd import log as logmod

    logmod.configure("console", "warning")
    ns = argparse.Namespace(
        vehicle="vehicle-yolov8n-coco.onnx", plate="plate-yolov8n.pt",
        ocr="trained/ocr-alprd-plate.onnx", dictionary="trained/ocr-alprd-plate-dict.txt",
        ocr_backend=args.ocr_backend,
    )  # fmt: skip
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
        prof = cProfile.Profile()
        r = gpu.many_streams(config, streams, args.steps, prof)
    print(f"{r['fps']:.1f} frames/s over {r['frames']} frames (profiled)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(22)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
