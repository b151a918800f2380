"""ONNX Runtime: the artefact is the validated fp32 ONNX itself (ONNX Runtime
optimises the graph in memory at load, in well under a second for these models).
Uses the CUDA provider first when the installed onnxruntime build has it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from alprd.engines.backends._cpu import cpu_identity
from alprd.engines.base import BuildRequest, EngineError, Progress


def _providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxRuntimeEngine:
    backend = "onnxruntime"

    def __init__(self, path: Path, precision: str, threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options, providers=_providers())
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EngineError(f"{path}: onnxruntime cannot load it: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        self.precision = precision

    def run(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        outputs = self._session.run(None, {self._input: batch})
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    def close(self) -> None:
        del self._session


class OnnxRuntimeBackend:
    name: ClassVar[str] = "onnxruntime"
    extension: ClassVar[str] = ".onnxruntime.onnx"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def runtime_version(self) -> str:
        return str(ort.__version__)

    def device_identity(self) -> dict[str, str]:
        return {**cpu_identity(), "providers": ",".join(_providers())}

    def build(self, onnx: Path, request: BuildRequest, out: Path, progress: Progress) -> None:
        progress("copying the fp32 ONNX graph")
        shutil.copyfile(onnx, out)

    def load(self, path: Path, request: BuildRequest) -> OnnxRuntimeEngine:
        return OnnxRuntimeEngine(path, request.precision)
