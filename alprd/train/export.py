"""The trained recogniser as alprd serves it: the ONNX (checked against torch on
ONNX Runtime, its latency measured), its dictionary, and its model card."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from alprd.engines.platenet import Exported, PlateNet


def export(net: PlateNet, out: Path, name: str) -> dict[str, Any]:
    """``<out>/<name>.onnx`` (input ``x``: N x 3 x H x W, output ``probs``: N x T x
    38, softmax; batch dynamic) and ``<out>/<name>-dict.txt``; checks ONNX Runtime
    against torch and measures latency when onnxruntime is installed."""
    net = net.cpu()
    served = Exported(net).eval()
    onnx_path = out / f"{name}.onnx"
    (out / f"{name}-dict.txt").write_text("".join(f"{c}\n" for c in net.charset), encoding="utf-8")
    x = torch.zeros(1, 3, net.height, net.width)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        _export(served, x, onnx_path)
    info: dict[str, Any] = {"onnx_bytes": onnx_path.stat().st_size}
    try:
        import onnxruntime as ort
    except ImportError:
        print("note: onnxruntime not installed: export not checked, latency not measured")
        return info
    rng = np.random.default_rng(0)
    probe = rng.uniform(-1, 1, (4, 3, net.height, net.width)).astype(np.float32)
    with torch.no_grad():
        want = served.eval()(torch.from_numpy(probe)).numpy()
    for threads in (1, 2):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        got = session.run(None, {"x": probe})[0]
        info["ort_max_abs_diff"] = float(np.abs(got - want).max())
        one = probe[:1]
        for _ in range(20):
            session.run(None, {"x": one})
        times = []
        for _ in range(200):
            t = time.perf_counter()
            session.run(None, {"x": one})
            times.append(time.perf_counter() - t)
        info[f"latency_ms_batch1_threads{threads}"] = round(1000 * statistics.median(times), 3)
    if info["ort_max_abs_diff"] > 1e-4:
        raise RuntimeError(
            f"ONNX Runtime output differs from torch by {info['ort_max_abs_diff']:.2e}"
        )
    return info


def _export(served: nn.Module, x: torch.Tensor, onnx_path: Path) -> None:
    torch.onnx.export(
        served,
        (x,),
        str(onnx_path),
        dynamo=False,
        input_names=["x"],
        output_names=["probs"],
        dynamic_axes={"x": {0: "batch"}, "probs": {0: "batch"}},
        opset_version=17,
    )


def versions() -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
    for mod in ("onnx", "onnxruntime"):
        with contextlib.suppress(ImportError):
            out[mod] = __import__(mod).__version__
    return out


def model_card(name: str, run: dict[str, Any], exported: dict[str, Any], command: str) -> str:
    v = run.get("validation", {})
    lines = [
        f"# {name}: alprd plate recogniser",
        "",
        "A small convolutional CTC recogniser (7 conv blocks with batch norm collapsing the "
        "height, 3 1-D convolutions along the width, CTC) trained by "
        "`alprd train-ocr` for the `models.ocr` role.",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command}`",
        f"- input: {run['input'][0]} x {run['input'][1]} x {run['input'][2]} "
        "(BGR scaled to [-1, 1], "
        f"the serving crop with `input_width = {run['input'][2]}`, `two_line_aspect = "
        f"{run['two_line_aspect']}`); output: N x {run['input'][2] // 4} x 38 softmax "
        "(blank, A-Z0-9 in the dictionary's order, then the contract's space class: a "
        "crop in the wrong view)",
        f"- parameters: {run['params']:,}; ONNX: {exported.get('onnx_bytes', 0) / 1e6:.2f} MB",
        f"- training: {run['steps']} steps, batch {run['batch']}, AdamW one-cycle lr {run['lr']}, "
        f"seed {run['seed']}, device {run['device']}, AMP {run['amp']}, {run['workers']} workers, "
        f"{run['train_s']} s; checkpoint of step {run['best_step']} kept "
        "(best validation exact rate)",
        f"- versions: {json.dumps(versions())}",
        "",
        "## Data",
        "",
        f"From `{run['data']}`. Real crops are split by plate text (sha256 of the plate "
        "string, validation fraction below); the validation plates are never trained on, "
        "and renders of validation plates are left out. the plates-br photos are "
        "never used for training or selection.",
        "",
        f"- counts: {json.dumps(run['counts'])}",
        f"- mixing weights: {json.dumps(run['mix'])} (generated plates: "
        f"{'alprd.train.synth' if run['synth_module'] else 'module not installed, none'})",
        f"- samples drawn per source: {json.dumps(run['samples_drawn'])}",
        "- augmentation: canvas (replicated border or a textured colour), rotation (sd 2.5 "
        "deg), shear, down/up-scaling, Gaussian or motion blur, grey, colour cast, "
        "brightness/contrast, noise, JPEG; box 1.0-2.0x the plate's height, 0.97-1.28x "
        "its width, off-centre (like the plate detector's boxes); a share "
        f"{run['mild']} only lightly augmented; over the first {run['curriculum']} of the "
        "steps the mix moves from lightly augmented renders to these weights",
        "",
        "## Validation (real crops, held-out plates)",
        "",
        "Greedy CTC, no format rules, each crop read as served (in the view its aspect "
        "suggests, again the other way when the recogniser says so). `tight`: the "
        "labelled crop; `detector`: a box 1.4x taller and 1.1x wider. Optimistic by "
        "the checkpoint selection on the same split (`make bench-accuracy` measures the "
        "committed model with the rules). Kinds with fewer than 15 crops are counted "
        "in their region only.",
        "",
        "| view | region / kind | exact | n |",
        "|---|---|---|---|",
    ]
    for view, m in v.items():
        lines.append(f"| {view} | all | {m['exact']:.4f} | {m['n']} |")
        for region, rm in m.get("per_region", {}).items():
            lines.append(f"| {view} | **{region}** | {rm['exact']:.4f} | {rm['n']} |")
        for kind, km in m["per_kind"].items():
            if km["n"] >= 15:
                lines.append(f"| {view} | {kind} | {km['exact']:.4f} | {km['n']} |")
    if v:
        lines += [
            "",
            "Character confusions (truth->read, detector view): "
            + json.dumps(v["detector"]["confusions"]),
        ]
    lines += [
        "",
        "## Latency (ONNX Runtime, CPU of the machine that exported it, batch 1, median of 200)",
        "",
        f"{json.dumps({k: v for k, v in exported.items() if k.startswith('latency')})}",
        "",
        "## Licence",
        "",
        "AGPL-3.0: the real training crops (Brazil and Europe: openalpr/train-detector; "
        "the US: openalpr/benchmarks) are AGPL-3.0, as is alprd.",
        "",
    ]
    return "\n".join(lines)
