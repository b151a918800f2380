"""Source model -> fp32 ONNX, and what the ONNX says about itself. Runs in the build
child only: exporting a ``.pt`` imports torch and ultralytics, which the serving
path never does."""

from __future__ import annotations

import ast
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from alprd.engines.base import BuildRequest, EngineError, Progress


@dataclass(frozen=True)
class ModelInfo:
    """What a model declares: its input/output shapes and (detectors) class names."""

    input_shape: tuple[int | str | None, ...]
    output_shape: tuple[int | str | None, ...]
    names: tuple[str, ...]  # index -> class name; empty when the model does not say
    task: str  # "detect", or "" when the model does not say


def to_onnx(request: BuildRequest, workdir: Path, progress: Progress) -> Path:
    """An fp32 ONNX of `request.source` shaped for the request (a copy for .onnx)."""
    source = request.source
    if not source.is_file():
        raise EngineError(f"{source}: model file not found")
    suffix = source.suffix.lower()
    if suffix == ".onnx":
        if request.kind == "detector":
            info = inspect(source)
            _check_detector(info, request)  # what it is, before how it is shaped
            if _needs_reshape(info, request):
                return _reexport_onnx(request, workdir, progress)
        return source
    if suffix == ".pt":
        if request.kind != "detector":
            raise EngineError(
                f"{source}: a .pt source is supported for detectors only; give an ONNX recogniser"
            )
        return _export_pt(request, workdir, progress)
    raise EngineError(
        f"{source}: unsupported model format {suffix!r}; use .onnx or an Ultralytics .pt"
    )


def _export_pt(request: BuildRequest, workdir: Path, progress: Progress) -> Path:
    _ultralytics_env(workdir)
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise EngineError(
            f"{request.source}: exporting a .pt needs torch and ultralytics ({exc}); "
            "run `make install` (CPU torch) or give an .onnx source"
        ) from None
    copy = workdir / "model.pt"  # export next to a copy: nothing is written beside the source
    shutil.copyfile(request.source, copy)
    progress(f"exporting {request.source.name} to ONNX (ultralytics)")
    try:
        model = YOLO(str(copy))
    except Exception as exc:
        raise EngineError(
            f"{request.source}: not a loadable Ultralytics model ({_brief(exc, workdir)})"
        ) from None
    if model.task != "detect":
        raise EngineError(
            f"{request.source}: an Ultralytics {model.task!r} model; "
            f"the {request.role} role needs a detector"
        )
    h, w = request.shape.height, request.shape.width
    try:
        out = model.export(
            format="onnx", imgsz=(h, w), batch=request.shape.batch, dynamic=False,
            simplify=False, half=False, device="cpu",
        )  # fmt: skip
    except Exception as exc:
        raise EngineError(
            f"{request.source}: ONNX export failed ({_brief(exc, workdir)})"
        ) from None
    return Path(out)


def _brief(exc: BaseException, workdir: Path) -> str:
    """A library's exception as one short plain line: its type and first line,
    without the build's temporary paths, symbols or advice that follows."""
    first = str(exc).replace(str(workdir), "").strip().splitlines()
    text = first[0] if first else ""
    text = "".join(c for c in text if c.isascii() and (c.isprintable())).strip(" :.-")
    text = text.replace("\\n", " ")
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def _needs_reshape(info: ModelInfo, request: BuildRequest) -> bool:
    """A fixed-shape detector ONNX whose input is not the one asked for."""
    want = request.shape.dims()
    have = tuple(info.input_shape)
    if len(have) != 4:
        return False
    return any(isinstance(h, int) and h != w for h, w in zip(have, want, strict=True))


def _reexport_onnx(request: BuildRequest, workdir: Path, progress: Progress) -> Path:
    """An Ultralytics detector ONNX exported at one fixed size, exported again at the
    size asked for (e.g. 384x640 for 16:9 cameras instead of 640x640): its weights
    are loaded, by name, into the same architecture built by ultralytics (see
    `lift`), checked to reproduce the original, and exported at the new size."""
    src = request.source
    h, w = request.shape.height, request.shape.width
    try:
        import onnx
        import torch

        _ultralytics_env(workdir)
        from alprd.engines import lift
    except ImportError as exc:
        raise EngineError(
            f"{src}: has a fixed input; building it at {h}x{w} needs torch and "
            f"ultralytics ({exc}): run `make install`, or set input_size to the model's size"
        ) from None
    lifted = lift.yolo_from_onnx(src, hint="set input_size to the model's own size")
    progress(f"rebuilt {src.name} as {lifted.arch} (its own weights); exporting at {h}x{w}")
    out = workdir / f"{src.stem}-{h}x{w}.onnx"
    with torch.no_grad():
        torch.onnx.export(
            lift.FirstOutput(lifted.module), (torch.zeros(request.shape.dims()),), str(out),
            input_names=["images"], output_names=["output0"], opset_version=17, dynamo=False,
        )  # fmt: skip
    exported = onnx.load(str(out))
    for key, value in {**lifted.metadata, "imgsz": str([h, w])}.items():
        entry = exported.metadata_props.add()  # names, task, stride: what inspect() reads
        entry.key, entry.value = key, value
    onnx.save(exported, str(out))
    return out


def _ultralytics_env(workdir: Path) -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(workdir / "ultralytics-config"))


def inspect(onnx: Path) -> ModelInfo:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EngineError(f"{onnx}: not a loadable ONNX model: {exc}") from None
    meta = session.get_modelmeta().custom_metadata_map
    names: tuple[str, ...] = ()
    if "names" in meta:
        try:
            parsed = ast.literal_eval(meta["names"])
            names = tuple(str(parsed[i]) for i in sorted(parsed))
        except (ValueError, SyntaxError, TypeError, KeyError):
            names = ()
    return ModelInfo(
        tuple(session.get_inputs()[0].shape),
        tuple(session.get_outputs()[0].shape),
        names,
        meta.get("task", ""),
    )


def check_role(info: ModelInfo, request: BuildRequest) -> None:
    """Refuse a model that cannot serve the role, saying what to change. What the
    model is (task, classes) is checked before how it is shaped."""
    src, role = request.source, request.role
    fixed = [d if isinstance(d, int) else None for d in info.input_shape]
    if len(fixed) != 4 or (fixed[1] not in (None, 3)):
        raise EngineError(f"{src}: input {info.input_shape} is not an N x 3 x H x W image batch")
    if request.kind == "detector":
        _check_detector(info, request)
    elif len(info.output_shape) != 3:
        raise EngineError(
            f"{src}: output {info.output_shape} is not a CTC sequence (N x T x classes)"
        )
    want = request.shape
    if (fixed[2] is not None and fixed[2] != want.height) or (
        want.width is not None and fixed[3] is not None and fixed[3] != want.width
    ):
        key = "input_height" if request.kind == "recognizer" else "input_size"
        raise EngineError(
            f"{src}: has a fixed {fixed[2]}x{fixed[3]} input but models.{role}.{key} asks for "
            f"{want.height}x{want.width or 'any'}; set {key} to match or use a .pt source"
        )
    if fixed[0] is not None and fixed[0] != want.batch:
        raise EngineError(
            f"{src}: has a fixed batch of {fixed[0]} but engines.batch_size is {want.batch}; "
            "set batch_size to match or use a .pt source"
        )


#: The strides of the detection grids of YOLOv8/11 (P3-P5), with a P2 or a P6 level.
_YOLO_STRIDES = ((8, 16, 32), (4, 8, 16, 32), (8, 16, 32, 64))


def _cells_fit(info: ModelInfo) -> bool:
    """Whether a fixed input's output has one column per cell of the YOLO grids (a
    recogniser's N x 32 x 38 has the rank and the sizes of a head, not this)."""
    size, cells = info.input_shape[2:], info.output_shape[2]
    if len(size) != 2:
        return True
    h, w = size
    if not (isinstance(h, int) and isinstance(w, int) and isinstance(cells, int)):
        return True  # dynamic: nothing to compare
    return any(cells == sum((h // s) * (w // s) for s in strides) for strides in _YOLO_STRIDES)


def _check_detector(info: ModelInfo, request: BuildRequest) -> None:
    src, role = request.source, request.role
    head = info.output_shape
    if (
        info.task not in ("", "detect")
        or len(head) != 3
        or not isinstance(head[1], int)
        or head[1] < 5
        or not _cells_fit(info)
    ):
        raise EngineError(
            f"{src}: output {info.output_shape} is not a YOLO detection head; "
            f"the {role} role needs a detector"
        )
    channels = info.output_shape[1]
    if info.names and isinstance(channels, int) and channels != 4 + len(info.names):
        raise EngineError(
            f"{src}: output has {channels} channels for {len(info.names)} classes; "
            "not a YOLOv8/11 detection head"
        )
    if role == "plate" and not request.classes and len(info.names) > 1:
        shown = ", ".join(info.names[:5]) + (", ..." if len(info.names) > 5 else "")
        raise EngineError(
            f"{src}: a plate detector has one class; this model has {len(info.names)} "
            f"({shown}): not a plate detector"
        )
    missing = [c for c in request.classes if c not in info.names]
    if missing:
        known = ", ".join(info.names) if info.names else "none declared"
        raise EngineError(
            f"{src}: has no class {', '.join(map(repr, missing))} (models.{role}.classes); "
            f"its classes: {known}"
        )
