"""The naive loop alprd is compared with: Ultralytics `predict` on every frame, on
every vehicle crop, then the recogniser (ONNX Runtime) on every plate; no engine
cache, no batching across stages. Prints one JSON line of measurements.

Fair by construction: the models are loaded and warmed up (untimed steps over
the first `--warmup` frames, default 1, and every model run at least once) before
the timed loop, as alprd's are; frames are decoded inside the timed loop
(`--decode inside`, as a camera delivers them: each camera's video from its
start, with OpenCV, as a user's script would) or all before it (`--decode
outside`); the recogniser gets alprd's input size. `--cameras N` runs
N replays of the video (other offsets) with each step's N frames given to
`predict` as one list (Ultralytics' own batching); `--more-videos` spreads the
cameras over several videos and `--first-camera K` makes this process camera K
of such a set (N processes, each one camera, started together through `--go`).

On a GPU: `--device cuda:0 --half` runs both detectors in fp16 there, and
`--ocr-backend torch` the recogniser too (alprd's own recogniser rebuilt as a
plain torch module by `alprd.engines.lift`, one call per plate: no batching, no
CUDA graphs), so both sides run the same networks at the same precision.

By default it runs on CPU torch. Where torchvision's compiled operators do not
load (the PyPI torchvision is built against CUDA torch), Ultralytics' own
pure-torch NMS (`TorchNMS.nms`, which matches torchvision's) stands in for
`torchvision.ops.nms`: said in the output as `nms`."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

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


class Capture:
    """A video decoded by OpenCV one frame at a time, from its start again at its end."""

    def __init__(self, video: str) -> None:
        self.video = video
        self.cap = cv2.VideoCapture(video)

    def read(self) -> np.ndarray:
        ok, frame = self.cap.read()
        if not ok:
            self.cap.release()
            self.cap = cv2.VideoCapture(self.video)
            ok, frame = self.cap.read()
        return frame


class Naive:
    def __init__(self, args: argparse.Namespace) -> None:
        from ultralytics import YOLO

        self.args = args
        self.vmodel = YOLO(args.vehicle, task="detect")
        self.pmodel = YOLO(args.plate, task="detect")
        self.ocr = recogniser(args)
        with open(args.dictionary, encoding="utf-8") as f:
            self.chars = ["", *f.read().splitlines(), " "]
        self.stages: dict[str, list[float]] = {"vehicle": [], "plate": [], "ocr": []}
        self.reads: list[str] = []
        self.plate_calls = 0
        self.device = {"device": args.device} if args.device else {}

    def step(self, frames: list[np.ndarray]) -> None:
        """One step: the vehicles of every frame (one `predict` on the list), the
        plates on each vehicle crop, the recogniser on each plate."""
        a = self.args
        t0 = time.perf_counter()
        size = a.vehicle_size if len(a.vehicle_size) == 2 else a.vehicle_size[0]
        results = self.vmodel.predict(
            frames, imgsz=size, classes=[2, 3, 5, 7], half=a.half, verbose=False, **self.device
        )
        t1 = time.perf_counter()
        plates = []
        for frame, vr in zip(frames, results, strict=True):
            for x1, y1, x2, y2 in vr.boxes.xyxy.cpu().numpy().astype(int):
                crop = frame[y1:y2, x1:x2]
                if crop.size == 0:
                    continue
                [pr] = self.plates_of(crop)
                for p, q, r, s in pr.boxes.xyxy.cpu().numpy().astype(int):
                    plates.append(crop[q:s, p:r])
        t2 = time.perf_counter()
        for p in plates:
            if p.size == 0:
                continue
            self.reads.append(self.read(p))
        t3 = time.perf_counter()
        for stage, seconds in zip(self.stages, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            self.stages[stage].append(seconds)

    def plates_of(self, crop: np.ndarray) -> list:
        self.plate_calls += 1
        return self.pmodel.predict(  # type: ignore[no-any-return]
            crop, imgsz=self.args.plate_size, half=self.args.half, verbose=False, **self.device
        )

    def read(self, plate: np.ndarray) -> str:
        a = self.args
        w = a.ocr_width or max(8, int(a.ocr_height * plate.shape[1] / plate.shape[0]))
        x = cv2.resize(plate, (w, a.ocr_height)).astype(np.float32) / 127.5 - 1.0
        best = self.ocr(x.transpose(2, 0, 1)[None]).argmax(axis=1)
        return "".join(
            self.chars[k] for i, k in enumerate(best) if k and (i == 0 or k != best[i - 1])
        )

    def warm(self, frames: list[np.ndarray], cameras: int) -> None:
        """Untimed: a step on each of `frames` (every camera given the same frame),
        then the plate detector and the recogniser once each if no vehicle or plate
        came up, so that neither sets itself up inside the timed loop."""
        for frame in frames:
            self.step([frame] * cameras)
        h, w = frames[0].shape[:2]
        if not self.plate_calls:
            self.plates_of(frames[0][h // 4 : 3 * h // 4, w // 4 : 3 * w // 4])
        if not self.reads:
            self.read(frames[0][: h // 8, : w // 4])
        self.stages = {k: [] for k in self.stages}
        self.reads = []


def recogniser(args: argparse.Namespace) -> Callable[[np.ndarray], np.ndarray]:
    """The recogniser, called on one plate (1 x 3 x H x W float32) at a time:
    ONNX Runtime on the CPU, or (`--ocr-backend torch`) alprd's recogniser rebuilt
    as a torch module, on --device, fp16 with --half."""
    if args.ocr_backend == "onnxruntime":
        session = ort.InferenceSession(args.rec, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"x": x})[0][0]  # type: ignore[no-any-return]
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from alprd.engines import lift

    module, _ = lift.platenet_from_onnx(Path(args.rec))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    half = args.half and device.type == "cuda"
    dtype = torch.float16 if half else torch.float32
    module = module.to(device, dtype).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(x).to(device, dtype))
        return out[0].float().cpu().numpy()  # type: ignore[no-any-return]

    return run


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
    p.add_argument(
        "--more-videos",
        nargs="*",
        default=[],
        help="camera i replays video i mod (1 + their number), this one first",
    )
    p.add_argument(
        "--first-camera",
        type=int,
        default=0,
        help="this process's cameras are numbered from here (offset 37 frames each)",
    )
    p.add_argument("--device", default="", help="cuda:0, cpu... (default: Ultralytics' choice)")
    p.add_argument("--half", action="store_true", help="fp16 on a GPU")
    p.add_argument(
        "--ocr-backend",
        choices=["onnxruntime", "torch"],
        default="onnxruntime",
        help="torch: alprd's recogniser as a torch module on --device",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed steps over the first frames")
    p.add_argument("--go", help="once warm, create GO.<pid>.ready and wait for GO to exist")
    args = p.parse_args()
    nms = _nms()
    naive = Naive(args)
    naive.warm(frames_of(args.video, max(1, args.warmup)), args.cameras)
    first = time.monotonic() - T0
    videos = [args.video, *args.more_videos]
    cams = range(args.first_camera, args.first_camera + args.cameras)
    inside = args.decode == "inside"
    clips = [] if inside else [frames_of(v, args.frames) for v in videos]
    if args.go:
        Path(f"{args.go}.{os.getpid()}.ready").touch()
        while not os.path.exists(args.go):
            time.sleep(0.002)
    steps = 0
    clock = time.time()
    started = time.monotonic()
    cpu = time.process_time()
    if inside:  # each camera's video decoded as it goes, from its start
        caps = [Capture(videos[i % len(videos)]) for i in cams]
        while steps < args.frames:
            naive.step([cap.read() for cap in caps])
            steps += 1
    else:
        for step in range(max(len(c) for c in clips)):
            frames = []
            for i in cams:
                clip = clips[i % len(clips)]
                frames.append(clip[(step + 37 * i) % len(clip)])
            naive.step(frames)
            steps += 1
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu
    print(json.dumps({
        "frames": steps * args.cameras, "wall_s": wall, "cpu_s": cpu, "stages": naive.stages,
        "started": clock, "ended": clock + wall,
        "reads": len(naive.reads), "first_result_s": first, "nms": nms,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
