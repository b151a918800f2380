"""The naive loop alprd is compared with: Ultralytics `predict` on every frame, on
every vehicle crop, then the OCR on every plate (no batching, no engine cache).
Runs in its own venv (.venv-naive: torch + torchvision + ultralytics, which the
serving venv does not have). Prints one JSON line of measurements."""

from __future__ import annotations

import json
import os
import resource
import sys
import time

os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", YOLO_VERBOSE="False")
T0 = time.monotonic()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from ultralytics import YOLO  # noqa: E402


def main() -> None:
    video, vehicle, plate, rec, dictionary, limit = sys.argv[1:7]
    # the recogniser's input: height, and a fixed width (0: keep the aspect, PP-OCR)
    height = int(sys.argv[7]) if len(sys.argv) > 7 else 48
    fixed_width = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    vmodel = YOLO(vehicle, task="detect")
    pmodel = YOLO(plate, task="detect")
    ocr = ort.InferenceSession(rec, providers=["CPUExecutionProvider"])
    with open(dictionary, encoding="utf-8") as f:
        chars = ["", *f.read().splitlines(), " "]
    cap = cv2.VideoCapture(video)
    stages: dict[str, list[float]] = {"vehicle": [], "plate": [], "ocr": []}
    frames, reads, first = 0, [], None
    started = time.monotonic()
    while frames < int(limit):
        ok, frame = cap.read()
        if not ok:
            break
        t0 = time.perf_counter()
        [vr] = vmodel.predict(frame, imgsz=640, classes=[2, 3, 5, 7], verbose=False)
        t1 = time.perf_counter()
        plates = []
        for x1, y1, x2, y2 in vr.boxes.xyxy.cpu().numpy().astype(int):
            crop = frame[y1:y2, x1:x2]
            if crop.size == 0:
                continue
            [pr] = pmodel.predict(crop, imgsz=416, verbose=False)
            for a, b, c, d in pr.boxes.xyxy.cpu().numpy().astype(int):
                plates.append(crop[b:d, a:c])
        t2 = time.perf_counter()
        for p in plates:
            if p.size == 0:
                continue
            w = fixed_width or max(8, int(height * p.shape[1] / p.shape[0]))
            x = cv2.resize(p, (w, height)).astype(np.float32) / 127.5 - 1.0
            out = ocr.run(None, {"x": x.transpose(2, 0, 1)[None]})[0][0]
            best = out.argmax(axis=1)
            text = "".join(
                chars[k] for i, k in enumerate(best) if k and (i == 0 or k != best[i - 1])
            )
            reads.append(text)
        t3 = time.perf_counter()
        stages["vehicle"].append(t1 - t0)
        stages["plate"].append(t2 - t1)
        stages["ocr"].append(t3 - t2)
        frames += 1
        if first is None:
            first = time.monotonic() - T0
    wall = time.monotonic() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "frames": frames,
                "wall_s": wall,
                "stages": stages,
                "reads": len(reads),
                "rss_mb": rss_mb,
                "first_result_s": first,
            }
        )
    )


if __name__ == "__main__":
    main()
