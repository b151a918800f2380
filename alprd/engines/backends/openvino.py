"""OpenVINO (CPU): the artefact is a compiled model blob (``export_model``),
imported in well under a second. fp32 runs in f32; fp16 runs in the CPU's fast
float type (bf16 where the CPU has it, else f16 where it has it, else f32);
int8 is post-training quantization with NNCF on the calibration images, the
detection head kept in float (as Ultralytics does)."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

# isort: off
from alprd.engines.backends import _telemetry  # noqa: F401  (opts out before openvino loads)
import openvino as ov

# isort: on

from alprd.engines import samples
from alprd.engines.backends._cpu import cpu_identity
from alprd.engines.base import Backend, BuildRequest, Engine, EngineError, HostEngine, Progress

DEVICE = "CPU"


def _core() -> ov.Core:
    return ov.Core()


def inference_precision(core: ov.Core, precision: str) -> str:
    if precision == "fp32":
        return "f32"
    caps = set(core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))
    return "bf16" if "BF16" in caps else "f16" if "FP16" in caps else "f32"


def _properties(core: ov.Core, precision: str, streams: int = 1) -> dict[str, Any]:
    # import_model does not restore compile-time properties: pass them on both.
    props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": inference_precision(core, precision)}
    if streams > 1:  # several inferences at once (run_many), the cores shared out
        props["NUM_STREAMS"] = streams
    return props


class OpenVinoEngine(HostEngine):
    backend = "openvino"

    def __init__(self, compiled: ov.CompiledModel, precision: str, streams: int = 1) -> None:
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self.precision = precision
        self.streams = streams
        self._queue = ov.AsyncInferQueue(compiled, streams) if streams > 1 else None

    def run(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        # the batch read where it lies (it is a fresh C-ordered float32 block that
        # outlives the call), not copied into the request's own tensor first
        results = self._request.infer({0: batch}, share_inputs=True)
        return [np.asarray(results[o], dtype=np.float32) for o in self._compiled.outputs]

    def run_many(
        self, batches: Sequence[npt.NDArray[np.float32]]
    ) -> list[list[npt.NDArray[np.float32]]]:
        """`run` on each batch, `streams` at a time (one infer request per stream)."""
        if self._queue is None:
            return [self.run(b) for b in batches]
        out: list[list[npt.NDArray[np.float32]]] = [[] for _ in batches]

        def done(request: ov.InferRequest, i: int) -> None:
            out[i] = [np.array(request.get_tensor(o).data, dtype=np.float32)
                      for o in self._compiled.outputs]  # fmt: skip

        self._queue.set_callback(done)
        for i, b in enumerate(batches):
            self._queue.start_async({0: b}, i, share_inputs=True)  # alive until wait_all
        self._queue.wait_all()
        return out

    def close(self) -> None:
        del self._queue, self._request, self._compiled


class OpenVinoBackend:
    name: ClassVar[str] = "openvino"
    extension: ClassVar[str] = ".openvino.blob"
    precisions: ClassVar[tuple[str, ...]] = ("int8", "fp16", "fp32")

    def runtime_version(self) -> str:
        return str(ov.get_version())

    def device_identity(self) -> dict[str, str]:
        core = _core()
        return {
            **cpu_identity(),
            "ov_device": str(core.get_property(DEVICE, "FULL_DEVICE_NAME")),
            "ov_capabilities": ",".join(core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")),
        }

    def build(self, onnx: Path, request: BuildRequest, out: Path, progress: Progress) -> None:
        core = _core()
        model = core.read_model(str(onnx))
        if request.precision == "int8":
            model = _quantize(model, request, progress)
        progress(f"compiling for {DEVICE} ({inference_precision(core, request.precision)})")
        compiled = core.compile_model(model, DEVICE, _properties(core, request.precision))
        blob = io.BytesIO()
        compiled.export_model(blob)
        out.write_bytes(blob.getbuffer())

    def load(self, path: Path, request: BuildRequest) -> OpenVinoEngine:
        core = _core()
        try:
            # the blob mapped from its file and copied once, into OpenVINO's tensor
            # (bytes, then a stream, were two copies on the C heap: 7-19 MB more
            # resident after loading in `make bench-memory`)
            blob = ov.Tensor(np.memmap(path, dtype=np.uint8, mode="r"))
            compiled = core.import_model(
                blob, DEVICE, _properties(core, request.precision, request.streams)
            )
            del blob
        except Exception as exc:  # openvino raises RuntimeError with the reason
            raise EngineError(f"{path}: openvino cannot import it: {exc}") from exc
        return OpenVinoEngine(compiled, request.precision, request.streams)


def _quantize(model: ov.Model, request: BuildRequest, progress: Progress) -> ov.Model:
    import nncf  # only for int8 builds

    tensors = [samples.preprocess(img, request) for img in samples.load_images(request.calibration)]
    progress(f"quantizing to int8 with {len(tensors)} calibration images (nncf)")
    ignored = None
    if request.kind == "detector":
        heads = [
            int(m)
            for op in model.get_ops()
            for m in re.findall(r"/model\.(\d+)/", op.get_friendly_name())
        ]
        if heads:
            head = f"/model\\.{max(heads)}/"
            ignored = nncf.IgnoredScope(
                patterns=[
                    f".*{head}.*/Add",
                    f".*{head}.*/Sub",
                    f".*{head}.*/Mul",
                    f".*{head}.*/Div",
                    ".*\\.dfl.*",
                    ".*/dfl/.*",
                ],
                types=["Sigmoid"],
                validate=False,
            )
    try:
        return nncf.quantize(
            model,
            nncf.Dataset(tensors),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=min(300, len(tensors)),
            ignored_scope=ignored,
        )
    except Exception as exc:
        raise EngineError(f"int8 quantization failed: {exc}") from exc


if TYPE_CHECKING:  # what it declares, checked by mypy
    _engine: type[Engine] = OpenVinoEngine
    _backend: type[Backend] = OpenVinoBackend
