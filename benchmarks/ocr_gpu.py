"""The plate recogniser on an NVIDIA GPU (torch backend) against ONNX Runtime on the
CPU, on the real validation crops of every region, read as the pipeline serves them.

The torch backend rebuilds the committed recogniser's ONNX as a torch module
(`alprd.engines.lift`), runs it in fp16 with CUDA graphs, and samples each plate's
input from the frame already on the GPU (`TorchEngine.cut_batch`, both views: as one
line and unfolded). ONNX Runtime reads the host crops (`alprd.pipeline.ocr.crop`).
Each crop is put on a frame (its border replicated) with a detector-like box, read
in the view its aspect suggests, and again the other way when the recogniser says
that view is wrong (`alprd.pipeline.ocr.wrong_view`), as `Recognizer` does. Prints
the exact rates per region of both and how often they agree. Needs torch with CUDA,
onnx and onnxruntime; no other alprd dependency beyond numpy, OpenCV and structlog.

    python -m benchmarks.ocr_gpu [--data $ALPRD_TEST_DATA/ocr-train] [--onnx PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from alprd.engines import lift
from alprd.engines.backends.torch import TorchEngine
from alprd.pipeline import ocr
from alprd.pipeline.source import read_image
from alprd.train import data
from alprd.train import labels as labelling
from benchmarks import DATA, REPO

OCR_DATA = DATA / "ocr-train"
HEIGHT, WIDTH, ASPECT = 32, 128, 1.3
CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def served(first: np.ndarray, other: np.ndarray, alphabet: ocr.Alphabet) -> tuple[list[str], int]:
    """The text of each plate: its first view, or the other when the first is wrong."""
    chosen, again = ocr.either_view(first, other)
    return [t.text for t in alphabet.decode_many(alphabet.reduce(chosen))], int(again.sum())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=OCR_DATA)
    p.add_argument("--onnx", type=Path, default=REPO / "models/trained/ocr-alprd-plate.onnx")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    labels = labelling.split_rows(labelling.read_labels(args.data), 0.2)[1]
    dictionary = args.onnx.with_name(args.onnx.stem + "-dict.txt").read_text().splitlines()
    alphabet = ocr.Alphabet(dictionary, CHARSET)
    module, _ = lift.platenet_from_onnx(args.onnx)
    engine = TorchEngine(module, "fp16")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name() if engine.gpu else 'cpu'}, "
          f"fp16 {engine.dtype is not None}, CUDA graphs {engine.graphs_enabled}")  # fmt: skip
    engine.warm((3, HEIGHT, WIDTH), args.batch)
    session = ort.InferenceSession(str(args.onnx), providers=["CPUExecutionProvider"])
    for view in ("tight", "detector"):
        frames, boxes = [], []
        for label in labels:
            image = read_image(label.path)
            h, w = image.shape[:2]
            frame, box = (
                data.detector_view(image) if view == "detector" else (image, (0.0, 0.0, w, h))
            )
            frames.append(frame)
            boxes.append(box)
        compare(view, labels, frames, boxes, engine, session, alphabet, args.batch)
    return 0


def compare(view: str, labels: list[labelling.Label], frames: list[np.ndarray],
            boxes: list[tuple[float, float, float, float]], engine: TorchEngine,
            session: ort.InferenceSession, alphabet: ocr.Alphabet, batch: int) -> None:  # fmt: skip
    reads: dict[str, list[str]] = {"torch": [], "onnxruntime": []}
    again = {"torch": 0, "onnxruntime": 0}
    spent = 0.0
    for start in range(0, len(frames), batch):
        part = range(start, min(start + batch, len(frames)))
        cuts = [
            ocr.cut(frames[k].shape[:2], boxes[k], margin=0.0, trim_y=0.0, two_line_aspect=ASPECT)
            for k in part
        ]
        flipped = [(*c[:4], not c[4]) for c in cuts]
        t = time.perf_counter()
        device = engine.upload([frames[k] for k in part])
        outs = [
            engine.run_cuts(device, list(enumerate(cs)), HEIGHT, WIDTH) for cs in (cuts, flipped)
        ]
        spent += time.perf_counter() - t
        texts, n = served(outs[0], outs[1], alphabet)
        reads["torch"] += texts
        again["torch"] += n
        host = [
            np.stack([
                ocr.crop(frames[k], boxes[k], margin=0.0, trim_y=0.0, stretch=1.0, height=HEIGHT,
                         max_width=WIDTH, width=WIDTH,
                         two_line_aspect=float("inf") if c[4] else 0.0)
                for k, c in zip(part, cs, strict=True)
            ])
            for cs in (cuts, flipped)
        ]  # fmt: skip
        outs = [session.run(None, {"x": x})[0] for x in host]
        texts, n = served(outs[0], outs[1], alphabet)
        reads["onnxruntime"] += texts
        again["onnxruntime"] += n
    for name, got in reads.items():
        per: dict[str, list[int]] = {}
        for label, text in zip(labels, got, strict=True):
            for group in ("all", labelling.region_of(label.kind)):
                c = per.setdefault(group, [0, 0])
                c[0] += text == label.plate
                c[1] += 1
        rates = ", ".join(f"{g} {ok}/{n} ({ok / n:.1%})" for g, (ok, n) in sorted(per.items()))
        print(f"{view} box, {name}: exact (no rules): {rates}; "
              f"read again the other way: {again[name]}")  # fmt: skip
    same = sum(a == b for a, b in zip(reads["torch"], reads["onnxruntime"], strict=True))
    print(f"{view} box: torch and ONNX Runtime (CPU, fp32) read the same text on "
          f"{same}/{len(labels)} plates; torch {1000 * spent / len(labels):.2f} ms a plate "
          f"(both views, batches of {batch}, upload included)")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
