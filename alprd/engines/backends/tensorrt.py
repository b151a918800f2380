"""TensorRT: engines built from the fp32 ONNX with the builder API, run through the
tensor-name API (TensorRT >= 8.5; 10 on current JetPack and x86).

NOT VERIFIED ON TENSORRT HARDWARE: TensorRT cannot be installed where alprd is
developed. The argument mapping (precision flags, workspace, optimisation profile,
INT8 calibrator) is tested against a stand-in module at the import seam; the rest
follows NVIDIA's documented API. Device buffers use torch CUDA tensors (present on
JetPack and on GPU hosts that export .pt models).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import tensorrt as trt

from alprd.engines import samples
from alprd.engines.base import (
    OCR_WIDTHS,
    Backend,
    BuildRequest,
    Engine,
    EngineError,
    HostEngine,
    Progress,
)

_LOGGER = trt.Logger(trt.Logger.WARNING)


def _torch() -> Any:
    import torch

    if not torch.cuda.is_available():
        raise EngineError("tensorrt backend: no CUDA device visible to torch")
    return torch


class TensorRtEngine(HostEngine):
    backend = "tensorrt"

    def __init__(self, path: Path, precision: str) -> None:
        self._torch = _torch()
        runtime = trt.Runtime(_LOGGER)
        self._engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise EngineError(f"{path}: TensorRT cannot deserialize it (other version or GPU?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [
            n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        ]
        self._outputs = [n for n in names if n not in self._inputs]
        self._stream = self._torch.cuda.Stream()
        self.precision = precision

    def run(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).cuda()
        self._context.set_input_shape(self._inputs[0], tuple(x.shape))
        self._context.set_tensor_address(self._inputs[0], x.data_ptr())
        outs = []
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device="cuda")
            self._context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise EngineError("tensorrt: execute_async_v3 failed")
        self._stream.synchronize()
        return [o.cpu().numpy() for o in outs]

    def close(self) -> None:
        del self._context, self._engine


class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
    """Feeds the calibration images one batch at a time; no cache file (the
    fingerprint already covers the calibration set)."""

    def __init__(self, batches: list[npt.NDArray[np.float32]]) -> None:
        super().__init__()
        self._batches = iter(batches)
        self._batch_size = batches[0].shape[0]
        self._current: Any = None

    def get_batch_size(self) -> int:
        return int(self._batch_size)

    def get_batch(self, names: list[str]) -> list[int] | None:
        nxt = next(self._batches, None)
        if nxt is None:
            return None
        self._current = _torch().from_numpy(nxt).cuda()
        return [int(self._current.data_ptr())]

    def read_calibration_cache(self) -> None:
        return None

    def write_calibration_cache(self, cache: bytes) -> None:
        return None


def builder_config(builder: Any, network: Any, request: BuildRequest) -> Any:
    """The builder configuration for `request` (split out so it can be tested)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(
        trt.MemoryPoolType.WORKSPACE, int(request.workspace_gb * (1 << 30))
    )
    if request.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if request.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        images = samples.load_images(request.calibration)
        tensors = [samples.preprocess(img, request) for img in images]
        b = request.shape.batch
        batches = [np.concatenate(tensors[i : i + b]) for i in range(0, len(tensors) - b + 1, b)]
        config.int8_calibrator = _Calibrator(batches)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    if request.shape.width is None:  # dynamic-width recogniser
        lo, opt, hi = (request.shape.dims(w) for w in OCR_WIDTHS)
        profile.set_shape(name, lo, opt, hi)
    else:
        dims = request.shape.dims()
        profile.set_shape(name, dims, dims, dims)
    config.add_optimization_profile(profile)
    return config


class TensorRtBackend:
    name: ClassVar[str] = "tensorrt"
    extension: ClassVar[str] = ".engine"
    precisions: ClassVar[tuple[str, ...]] = ("int8", "fp16", "fp32")

    def runtime_version(self) -> str:
        return str(trt.__version__)

    def device_identity(self) -> dict[str, str]:
        out = {"gpu": "unknown", "compute_capability": "", "cuda": "", "driver_major": ""}
        try:
            torch = _torch()
            props = torch.cuda.get_device_properties(0)
            out.update(
                gpu=props.name,
                compute_capability=f"{props.major}.{props.minor}",
                cuda=str(torch.version.cuda).split(".")[0],
            )
        except (ImportError, EngineError):
            pass
        try:
            driver = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=False,
            ).stdout.strip()  # fmt: skip
            out["driver_major"] = driver.split(".")[0]
        except OSError:
            pass
        return out

    def build(self, onnx: Path, request: BuildRequest, out: Path, progress: Progress) -> None:
        builder = trt.Builder(_LOGGER)
        network = builder.create_network(0)  # explicit batch (TensorRT 10 default)
        parser = trt.OnnxParser(network, _LOGGER)
        if not parser.parse(onnx.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"{request.source}: TensorRT cannot parse the ONNX: {errors}")
        config = builder_config(builder, network, request)
        progress(f"building TensorRT {request.precision} engine (minutes on a Jetson)")
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f"{request.source}: TensorRT build failed (see the log above)")
        out.write_bytes(bytes(serialized))

    def load(self, path: Path, request: BuildRequest) -> TensorRtEngine:
        return TensorRtEngine(path, request.precision)


if TYPE_CHECKING:  # what it declares, checked by mypy
    _engine: type[Engine] = TensorRtEngine
    _backend: type[Backend] = TensorRtBackend
