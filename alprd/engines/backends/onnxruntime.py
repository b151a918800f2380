"""ONNX Runtime: the artefact is the validated fp32 ONNX itself (ONNX Runtime
optimises the graph in memory at load, in well under a second for these models).
Uses the CUDA provider first when the installed onnxruntime build has it."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from alprd.engines.backends._cpu import cpu_identity, cpu_threads
from alprd.engines.base import Backend, BuildRequest, Engine, EngineError, HostEngine, Progress


def _providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxRuntimeEngine(HostEngine):
    backend = "onnxruntime"

    def __init__(self, path: Path, precision: str, threads: int = 0, streams: int = 1) -> None:
        options = ort.SessionOptions()
        # several inferences at once (run_many): the cores shared between them
        options.intra_op_num_threads = threads or (cpu_threads() // streams if streams > 1 else 0)
        self.streams = streams
        self._pool = ThreadPoolExecutor(streams, "ort") if streams > 1 else None
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

    def run_many(
        self, batches: Sequence[npt.NDArray[np.float32]]
    ) -> list[list[npt.NDArray[np.float32]]]:
        """`run` on each batch, `streams` at a time (ONNX Runtime sessions are
        thread-safe and release the GIL while they run)."""
        if self._pool is None:
            return [self.run(b) for b in batches]
        return list(self._pool.map(self.run, batches))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
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
        return OnnxRuntimeEngine(path, request.precision, streams=request.streams)


if TYPE_CHECKING:  # what it declares, checked by mypy
    _engine: type[Engine] = OnnxRuntimeEngine
    _backend: type[Backend] = OnnxRuntimeBackend
