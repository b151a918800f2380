"""What a model file dropped into models/ is, and which role it fits.

`precheck` looks at the first bytes only (milliseconds): a ``.pt`` must be a
PyTorch zip checkpoint, an ``.onnx`` a protobuf model. `identify` then opens the
file in a child process (``python -m alprd.engines.identify FILE``: a ``.pt`` is
a pickle, loading it runs code, and a runtime may crash on bad bytes) and reports
its task, class names and input/output shapes. `route` (pure) decides the role:

- a detector with one class named like a plate (or no name) -> ``plate``
- a detector whose class names cover ``models.vehicle.classes`` -> ``vehicle``
- an ONNX recogniser with a CTC output (N x T x classes) and its dictionary
  beside it (``<stem>-dict.txt``, as ``alprd train-ocr`` writes) -> ``ocr``

Anything else gets one line saying which roles were considered and why none fits.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alprd.engines.base import EngineError, Role

#: Class names that make a one-class detector a plate detector.
PLATE_NAME = re.compile(
    r"plate|licen[cs]e|^lp$|^lpr$|^alpr$|placa|kennzeichen|targa|matr[ií]cula|number",
    re.IGNORECASE,
)
ONNX_FIRST_BYTE = 0x08  # ModelProto field 1 (ir_version), varint
IDENTIFY_TIMEOUT_S = 120.0
IDENTIFY_NICE = 10


@dataclass(frozen=True)
class Identity:
    """What a model file says about itself."""

    path: Path
    task: str  # "detect", "classify", "segment", ... ("" when it does not say)
    names: tuple[str, ...]  # class names, index order (empty when it does not say)
    input_shape: tuple[int | None, ...]  # None: a dynamic dimension
    output_shape: tuple[int | None, ...]


@dataclass(frozen=True)
class Routing:
    """Where a model goes: a role (with what that role needs besides the file), or
    None and why."""

    role: Role | None
    why: str
    dictionary: Path | None = None  # ocr: the character list beside the model
    input_height: int | None = None  # ocr: the model's fixed input height
    input_width: int | None = None  # ocr: its fixed input width (None: dynamic)


def precheck(path: Path) -> str | None:
    """Why `path` cannot be a model, from its first bytes; None if it may be one."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    suffix = path.suffix.lower()
    if suffix == ".pt":
        if head != b"PK\x03\x04":
            return "not a PyTorch checkpoint (a .pt is a zip archive; this file is not one)"
        if not zipfile.is_zipfile(path):
            return "a truncated or damaged PyTorch checkpoint (its zip directory is missing)"
        try:
            with zipfile.ZipFile(path) as z:
                if not any(n.endswith("data.pkl") for n in z.namelist()):
                    return "a zip archive but not a PyTorch checkpoint (no data.pkl inside)"
        except (zipfile.BadZipFile, OSError) as exc:
            return f"a damaged zip archive: {exc}"
        return None
    if suffix == ".onnx":
        if size < 32 or not head or head[0] != ONNX_FIRST_BYTE:
            return "not an ONNX model (it does not start like one)"
        return None
    return f"unsupported model format {suffix or '(no suffix)'}: use .pt or .onnx"


def identify(path: Path, timeout_s: float = IDENTIFY_TIMEOUT_S) -> Identity:
    """`path` opened in a child process. EngineError with one clean line when it
    cannot be read as a model."""
    problem = precheck(path)
    if problem:
        raise EngineError(f"{path.name}: {problem}")
    env = dict(os.environ)
    env.setdefault("YOLO_OFFLINE", "1")
    env.setdefault("YOLO_AUTOINSTALL", "False")
    env.setdefault("YOLO_VERBOSE", "False")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "alprd.engines.identify", str(path)],
            capture_output=True, text=True, timeout=timeout_s, env=env, check=False,
            preexec_fn=_behind,  # never ahead of the running pipeline
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise EngineError(f"{path.name}: reading it took longer than {timeout_s:.0f}s") from None
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        why = f"exit status {done.returncode}" if done.returncode else "no answer"
        raise EngineError(f"{path.name}: could not be opened as a model ({why})")
    msg = json.loads(lines[-1])
    if "error" in msg:
        raise EngineError(f"{path.name}: {msg['error']}")
    return Identity(
        path, msg["task"], tuple(msg["names"]),
        tuple(msg["input_shape"]), tuple(msg["output_shape"]),
    )  # fmt: skip


def _behind() -> None:
    """In the child, before exec: the lowest CPU priority but one."""
    os.nice(IDENTIFY_NICE)


def route(identity: Identity, vehicle_classes: Sequence[str]) -> Routing:
    """The role `identity` fits, from what it is (pure)."""
    name = identity.path.name
    task, names, out = identity.task, identity.names, identity.output_shape
    if task not in ("", "detect"):
        return Routing(
            None,
            f"{name} is an Ultralytics {task!r} model; alprd serves detectors (roles vehicle, "
            "plate) and a CTC recogniser (role ocr)",
        )
    inp = identity.input_shape
    if len(inp) != 4 or inp[1] not in (None, 3):
        return Routing(None, f"{name}: input {_shape(inp)} is not an N x 3 x H x W image batch")
    yolo_head = len(out) == 3 and isinstance(out[1], int) and out[1] >= 5
    if task == "detect" or (names and yolo_head):
        if not yolo_head:
            return Routing(None, f"{name}: output {_shape(out)} is not a YOLO detection head")
        if len(names) <= 1 and (not names or PLATE_NAME.search(names[0])):
            what = f"one class {names[0]!r}" if names else "one unnamed class"
            return Routing("plate", f"a detector with {what}")
        missing = [c for c in vehicle_classes if c not in names]
        if not missing:
            covered = ", ".join(vehicle_classes)
            return Routing("vehicle", f"a detector whose classes include {covered}")
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        return Routing(
            None,
            f"{name}: a detector with classes {shown}: not one plate class (role plate), and "
            f"without {', '.join(missing)} (models.vehicle.classes, role vehicle)",
        )
    if identity.path.suffix.lower() == ".onnx" and len(out) == 3:
        dictionary = identity.path.with_name(f"{identity.path.stem}-dict.txt")
        if not dictionary.is_file():
            return Routing(
                None,
                f"{name}: looks like a CTC recogniser (output {_shape(out)}) but its "
                f"dictionary {dictionary.name} is not beside it (role ocr needs one)",
            )
        return Routing(
            "ocr", f"a CTC recogniser with output {_shape(out)} and {dictionary.name}",
            dictionary=dictionary, input_height=inp[2], input_width=inp[3],
        )  # fmt: skip
    return Routing(
        None,
        f"{name}: output {_shape(out)} is neither a YOLO detection head (roles vehicle, "
        "plate) nor a CTC sequence (role ocr)",
    )


def _shape(dims: Sequence[int | None]) -> str:
    return " x ".join("?" if d is None else str(d) for d in dims) or "(none)"


# --------------------------------------------------------------------------- child


def _dims(shape: Sequence[object]) -> list[int | None]:
    return [d if isinstance(d, int) and not isinstance(d, bool) else None for d in shape]


def _describe(path: Path) -> dict[str, object]:
    if path.suffix.lower() == ".onnx":
        from alprd.engines import export

        info = export.inspect(path)
        return {
            "task": info.task, "names": list(info.names),
            "input_shape": _dims(info.input_shape), "output_shape": _dims(info.output_shape),
        }  # fmt: skip
    import tempfile

    with tempfile.TemporaryDirectory(prefix="alprd-identify-") as tmp:
        os.environ.setdefault("YOLO_CONFIG_DIR", tmp)
        try:
            from ultralytics import YOLO
        except ImportError:
            raise EngineError("reading a .pt needs torch and ultralytics (make install)") from None
        try:
            model = YOLO(str(path), task=None)
        except Exception as exc:
            raise EngineError(f"not a loadable Ultralytics model ({type(exc).__name__})") from None
        names = model.names if isinstance(model.names, dict) else dict(enumerate(model.names))
        imgsz = getattr(getattr(model.model, "args", None), "get", lambda *_: None)("imgsz")
        side = imgsz if isinstance(imgsz, int) else None
        channels = 4 + len(names) if model.task == "detect" else None
        return {
            "task": model.task, "names": [str(names[i]) for i in sorted(names)],
            "input_shape": [None, 3, side, side], "output_shape": [None, channels, None],
        }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)  # ours; libraries print to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        answer = _describe(Path(args[0]))
    except EngineError as exc:
        answer = {"error": str(exc)}
    except Exception as exc:  # any library failure becomes one line
        answer = {"error": f"could not be opened as a model ({type(exc).__name__})"}
    protocol.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
