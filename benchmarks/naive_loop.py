"""The naive loop alprd is compared with: Ultralytics `predict` on every frame, on
every vehicle crop, then the recogniser (ONNX Runtime) on every plate; no engine
cache, no batching across stages. Prints one JSON line of measurements.

Fair by construction: the models are loaded and warmed up (one untimed pass over
the first frame) before the timed loop, as alprd's are; frames are decoded inside
the timed loop (`--decode inside`, as a camera delivers them) or all before it
(`--decode outside`); the recogniser gets alprd's input size. `--cameras N` runs
N replays of the video (other offsets) with each step's N frames given to
`predict` as one list (Ultralytics' own batching).

It runs on CPU torch. Where torchvision's compiled operators do not load (the
PyPI torchvision is built against CUDA torch), Ultralytics' own pure-torch NMS
(`TorchNMS.nms`, which matches torchvision's) stands in for `torchvision.ops.nms`:
said in the output as `nms`."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import types

os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", YOLO_VERBOSE="False")
T0 = time.monotonic()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402


def _nms() -> str:
    """torchvision's NMS where it loads; else Ultralytics' pure-torch one."""
    try:
        import torch
        import torchvision

        torchvision.ops.nms(torch.zeros((1, 4)), torch.zeros(1), 0.5)
        return "torchvision"
    except Exception:  # any failure to load its operators
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        from ultralytics.utils.nms import TorchNMS

        stub = types.ModuleType("torchvision")
        stub.ops = types.SimpleNamespace(nms=TorchNMS.nms)  # type: ignore[attr-defined]
        sys.modules["torchvision"] = stub
        return "ultralytics TorchNMS"


def frames_of(video: str, limit: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(video)
    out = []
    while len(out) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


class Naive:
    def __init__(self, args: argparse.Namespace) -> None:
        from ultralytics import YOLO

        self.args = args
        self.vmodel = YOLO(args.vehicle, task="detect")
        self.pmodel = YOLO(args.plate, task="detect")
        self.ocr = ort.InferenceSession(args.rec, providers=["CPUExecutionProvider"])
        with open(args.dictionary, encoding="utf-8") as f:
            self.chars = ["", *f.read().splitlines(), " "]
        self.stages: dict[str, list[float]] = {"vehicle": [], "plate": [], "ocr": []}
        self.reads: list[str] = []

    def step(self, frames: list[np.ndarray]) -> None:
        """One step: the vehicles of every frame (one `predict` on the list), the
        plates on each vehicle crop, the recogniser on each plate."""
        a = self.args
        t0 = time.perf_counter()
        size = a.vehicle_size if len(a.vehicle_size) == 2 else a.vehicle_size[0]
        results = self.vmodel.predict(frames, imgsz=size, classes=[2, 3, 5, 7], verbose=False)
        t1 = time.perf_counter()
        plates = []
        for frame, vr in zip(frames, results, strict=True):
            for x1, y1, x2, y2 in vr.boxes.xyxy.cpu().numpy().astype(int):
                crop = frame[y1:y2, x1:x2]
                if crop.size == 0:
                    continue
                [pr] = self.pmodel.predict(crop, imgsz=a.plate_size, verbose=False)
                for p, q, r, s in pr.boxes.xyxy.cpu().numpy().astype(int):
                    plates.append(crop[q:s, p:r])
        t2 = time.perf_counter()
        for p in plates:
            if p.size == 0:
                continue
            w = a.ocr_width or max(8, int(a.ocr_height * p.shape[1] / p.shape[0]))
            x = cv2.resize(p, (w, a.ocr_height)).astype(np.float32) / 127.5 - 1.0
            out = self.ocr.run(None, {"x": x.transpose(2, 0, 1)[None]})[0][0]
            best = out.argmax(axis=1)
            text = "".join(
                self.chars[k] for i, k in enumerate(best) if k and (i == 0 or k != best[i - 1])
            )
            self.reads.append(text)
        t3 = time.perf_counter()
        for stage, seconds in zip(self.stages, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            self.stages[stage].append(seconds)


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("video", "vehicle", "plate", "rec", "dictionary"):
        p.add_argument(name)
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--vehicle-size", type=int, nargs="+", default=[640])
    p.add_argument("--plate-size", type=int, default=416)
    p.add_argument("--ocr-height", type=int, default=32)
    p.add_argument("--ocr-width", type=int, default=0, help="0: keep the aspect")
    p.add_argument("--decode", choices=["inside", "outside"], default="inside")
    p.add_argument("--cameras", type=int, default=1)
    args = p.parse_args()
    nms = _nms()
    naive = Naive(args)
    first_frames = frames_of(args.video, 1)
    naive.step(first_frames * args.cameras)  # warm-up, untimed (predictor set-up)
    naive.stages = {k: [] for k in naive.stages}
    naive.reads = []
    first = time.monotonic() - T0
    predecoded = args.decode == "outside" or args.cameras > 1
    clip = frames_of(args.video, args.frames) if predecoded else []
    steps = 0
    started = time.monotonic()
    if args.cameras == 1 and args.decode == "inside":
        cap = cv2.VideoCapture(args.video)
        while steps < args.frames:
            ok, frame = cap.read()
            if not ok:
                break
            naive.step([frame])
            steps += 1
        cap.release()
    else:
        for step in range(len(clip)):
            naive.step([clip[(step + 37 * i) % len(clip)] for i in range(args.cameras)])
            steps += 1
    wall = time.monotonic() - started
    print(json.dumps({
        "frames": steps * args.cameras, "wall_s": wall, "stages": naive.stages,
        "reads": len(naive.reads), "first_result_s": first, "nms": nms,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
