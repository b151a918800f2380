"""An Ultralytics YOLO detector ONNX back into the torch module it was exported
from (build child and torch backend only: imports torch and ultralytics).

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


def _check_reproduces(model: torch.nn.Module, path: Path, yaml: str) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    probe = np.random.default_rng(0).random(shape, dtype=np.float32)
    with torch.no_grad():
        ours = model(torch.from_numpy(probe))[0].numpy()
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
