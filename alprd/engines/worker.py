"""The build child: ``python -m alprd.engines.worker`` < job.json.

Exports the source to ONNX, checks it can serve its role, builds the engine into
the temporary path it was given, loads it back, and compares it with the source on
sample images. Reports JSON lines on its stdout (``progress``, ``result`` or
``error``); anything libraries print goes to stderr. It never touches the final
engine path: the parent installs the result, so a crash here, at any instant,
leaves the installed engine as it was.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from alprd.engines import export, registry, samples
from alprd.engines.base import BuildRequest, EngineError, InputShape, Tolerances
from alprd.engines.validate import Validation, compare_detectors, compare_recognizers

MAX_VALIDATION_IMAGES = 16
EXIT_REJECTED = 3
EXIT_CRASHED = 4


def encode_job(request: BuildRequest, out: Path) -> str:
    data = asdict(request)
    data["out"] = str(out)
    return json.dumps(data, default=str)


def decode_job(text: str) -> tuple[BuildRequest, Path]:
    d = json.loads(text)
    out = Path(d.pop("out"))
    d["source"] = Path(d["source"])
    d["shape"] = InputShape(**d["shape"])
    d["tolerances"] = Tolerances(**d["tolerances"])
    d["calibration"] = tuple(Path(p) for p in d["calibration"])
    d["validation"] = tuple(Path(p) for p in d["validation"])
    d["classes"] = tuple(d["classes"])
    return BuildRequest(**d), out


class Reporter:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._started = time.monotonic()

    def send(self, kind: str, **fields: Any) -> None:
        fields["elapsed_s"] = round(time.monotonic() - self._started, 2)
        self._stream.write(json.dumps({"type": kind, **fields}, default=str) + "\n")
        self._stream.flush()

    def progress(self, message: str) -> None:
        self.send("progress", message=message)


def build(request: BuildRequest, out: Path, report: Reporter) -> None:
    backend = registry.load_backend(request.backend)
    with tempfile.TemporaryDirectory(prefix="alprd-build-") as tmp:
        onnx = export.to_onnx(request, Path(tmp), report.progress)
        info = export.inspect(onnx)
        export.check_role(info, request)
        report.progress(f"building {request.backend} {request.precision} engine")
        backend.build(onnx, request, out, report.progress)
        report.progress("validating the engine against the source model")
        validation = validate(onnx, out, request, report.progress)
    report.send(
        "result",
        model={
            "names": list(info.names),
            "input_shape": list(info.input_shape),
            "output_shape": list(info.output_shape),
        },
        validation=asdict(validation),
    )


def validate(
    onnx: Path, engine_path: Path, request: BuildRequest, progress: Callable[[str], None] = print
) -> Validation:
    """Run the new engine and the source (ONNX Runtime, fp32) on the same inputs.
    A validation image that cannot be read is skipped and said (a camera sample
    cut short on a full disk says nothing of the model); none readable: generated
    images instead."""
    from alprd.engines.backends.onnxruntime import OnnxRuntimeEngine

    backend = registry.load_backend(request.backend)
    engine = backend.load(engine_path, request)
    reference = OnnxRuntimeEngine(onnx, "fp32")
    paths = request.validation[:MAX_VALIDATION_IMAGES]
    images, unreadable = samples.readable_images(paths)
    if unreadable:
        progress(f"{len(unreadable)} of {len(paths)} validation images unreadable, skipped: "
                 + ", ".join(str(p) for p in unreadable))  # fmt: skip
    images = images or samples.synthetic_images(request.kind)
    inputs = [samples.preprocess(img, request) for img in images]
    batch = request.shape.batch
    ref_out, cand_out = [], []
    for x in inputs:
        xb = x if batch == 1 else x.repeat(batch, axis=0)  # fixed-batch engines
        ref_out.append(reference.run(xb)[0][:1])
        cand_out.append(engine.run(xb)[0][:1])
    engine.close()
    reference.close()
    compare = compare_detectors if request.kind == "detector" else compare_recognizers
    return compare(ref_out, cand_out, request.tolerances)


def main() -> int:
    # Our protocol owns the real stdout; whatever libraries print goes to stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    report = Reporter(protocol)
    try:
        request, out = decode_job(sys.stdin.read())
        build(request, out, report)
    except EngineError as exc:
        report.send("error", message=str(exc))
        return EXIT_REJECTED
    except Exception as exc:  # a runtime's own failure: report it, with the traceback
        traceback.print_exc()
        report.send("error", message=f"{type(exc).__name__}: {exc}")
        return EXIT_CRASHED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
