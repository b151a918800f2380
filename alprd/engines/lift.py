"""An Ultralytics YOLO detector ONNX (or alprd's own plate recogniser) back into the
torch module it was exported from (build child and torch backend only: imports
torch, and ultralytics for detectors).

An Ultralytics export names its weights after the fused module's parameters
(``model.0.conv.weight``...) and says which model it is in its metadata
("Ultralytics YOLOv8n model trained on coco.yaml"). Building that architecture with
ultralytics, fusing it and loading the weights by name gives the same network with
shapes free again: any batch, any input size that is a multiple of the stride.
The result is checked against the ONNX itself before it is used.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alprd.engines.base import EngineError

#: "Ultralytics YOLOv8n model trained on coco.yaml" -> yolov8n.yaml; YOLO11s -> yolo11s.yaml
_ARCH = re.compile(r"\bYOLO(v\d+|\d+)([nsmlx])\b", re.IGNORECASE)


@dataclass
class Lifted:
    module: torch.nn.Module  # eval mode, fused, float32, on the CPU
    arch: str  # e.g. "yolov8n.yaml"
    metadata: dict[str, str]  # the ONNX's own metadata (names, task, stride...)
    names: dict[int, str]


def yolo_from_onnx(path: Path, hint: str = "") -> Lifted:
    """The torch module an Ultralytics YOLO detector ONNX was exported from.
    EngineError (ending with `hint`) when it is not one, or does not reproduce it."""
    import onnx
    from onnx import numpy_helper

    try:
        from ultralytics.nn.tasks import DetectionModel
    except ImportError as exc:
        raise EngineError(f"{path}: rebuilding it needs ultralytics ({exc}); {hint}") from None
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    arch = _ARCH.search(meta.get("description", ""))
    if "ultralytics" not in meta.get("author", "").lower() or arch is None:
        raise EngineError(
            f"{path}: has a fixed input and is not an Ultralytics YOLO export, so it "
            f"cannot be rebuilt at another size or batch; {hint}"
        )
    yaml = f"yolo{arch.group(1).lower()}{arch.group(2).lower()}.yaml"
    try:
        names = {int(k): str(v) for k, v in ast.literal_eval(meta.get("names", "{}")).items()}
    except (ValueError, SyntaxError, AttributeError):
        names = {}
    weights = {
        # our own re-export wraps the model once more (FirstOutput.model)
        i.name.removeprefix("model."): torch.from_numpy(numpy_helper.to_array(i).copy())
        for i in proto.graph.initializer
        if i.name.startswith("model.model.")
    } or {
        i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
        for i in proto.graph.initializer
        if i.name.startswith("model.")
    }
    try:
        model = DetectionModel(yaml, nc=len(names) or 80, verbose=False)
        model.fuse(verbose=False)
        state = model.state_dict()
        missing = [k for k in state if k not in weights and not k.endswith(("anchors", "strides"))]
        unused = [k for k in weights if k not in state]
        if missing or unused:
            raise ValueError(f"{len(missing)} tensors missing, {len(unused)} unused")
        model.load_state_dict({**state, **weights})
    except Exception as exc:
        raise EngineError(
            f"{path}: its weights do not fit the {yaml} architecture ({exc}); {hint}"
        ) from None
    model.eval()
    _check_reproduces(model, path, yaml)
    return Lifted(model, yaml, meta, names)


def _check_reproduces(model: torch.nn.Module, path: Path, yaml: str, first: bool = True) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    probe = np.random.default_rng(0).random(shape, dtype=np.float32)
    with torch.no_grad():
        ours = model(torch.from_numpy(probe))
        ours = (ours[0] if first else ours).numpy()
    theirs = session.run(None, {spec.name: probe})[0]
    scale = max(1.0, float(np.abs(theirs).max()))
    if ours.shape != theirs.shape or float(np.abs(ours - theirs).max()) > 1e-2 * scale:
        raise EngineError(f"{path}: rebuilt as {yaml} it does not reproduce the original model")


class FirstOutput(torch.nn.Module):  # type: ignore[misc]
    """A detection model seen through its prediction tensor only (N x 4+C x A), as
    its ONNX export gives it."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)[0]


# ---------------------------------------------------------------------- recogniser

PLATENET = "alprd-platenet"


def fused_platenet(dims: dict[str, Any]) -> torch.nn.Module:
    """alprd's plate recogniser (`alprd.engines.platenet.PlateNet`) as its ONNX export
    holds it: every batch norm folded into the convolution before it (the convs
    carry biases, the norms are identities), softmax on top."""
    from alprd.engines.platenet import Exported, PlateNet

    net = PlateNet(
        height=int(dims["height"]), width=int(dims["width"]),
        charset="?" * (int(dims["classes"]) - 2),  # the head's size; names live in the dictionary
        channels=tuple(dims["channels"]), hidden=int(dims["hidden"]),
    )  # fmt: skip
    for seq in (net.features, net.context):
        for i, m in enumerate(seq):
            if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d) and m.bias is None:
                m.bias = torch.nn.Parameter(torch.zeros(m.out_channels))
                seq[i + 1] = torch.nn.Identity()  # its batch norm, folded into m
    return Exported(net).eval()


def _conv_modules(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d)]


def platenet_from_onnx(path: Path, hint: str = "") -> tuple[torch.nn.Module, dict[str, Any]]:
    """alprd's own plate recogniser back from its ONNX (`alprd train-ocr` wrote it),
    with the dimensions that rebuild it. Other recognisers (PP-OCRv5...) raise
    EngineError ending with `hint`. Checked against the ONNX before it is used."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    try:
        weights = [inits[n.input[1]] for n in convs]
        biases = [inits[n.input[2]] for n in convs]
        if len(convs) != 11 or len(shape) != 4 or not shape[2] or not shape[3]:
            raise ValueError(f"{len(convs)} convolutions, input {shape}")
        dims: dict[str, Any] = {
            "height": shape[2], "width": shape[3], "classes": int(weights[-1].shape[0]),
            "channels": [int(weights[i].shape[0]) for i in (0, 1, 2, 4)],
            "hidden": int(weights[7].shape[0]),
        }  # fmt: skip
        module = fused_platenet(dims)
        targets = _conv_modules(module)
        for conv, w, b in zip(targets, weights, biases, strict=True):
            if tuple(conv.weight.shape) != w.shape:
                raise ValueError(f"weight {w.shape} where {tuple(conv.weight.shape)} fits")
            conv.weight.data = torch.from_numpy(w.copy())
            conv.bias.data = torch.from_numpy(b.copy())
    except (KeyError, IndexError, ValueError) as exc:
        raise EngineError(
            f"{path}: not an alprd plate recogniser (alprd train-ocr), so the torch "
            f"backend cannot rebuild it ({exc}); {hint}"
        ) from None
    _check_reproduces(module, path, "alprd's plate recogniser", first=False)
    return module, dims
