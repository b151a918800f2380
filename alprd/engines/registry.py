"""Backends by import string: a runtime that is not installed is never imported."""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from functools import cache

from alprd.engines.base import Backend, BackendUnavailable

BACKENDS: dict[str, str] = {
    "tensorrt": "alprd.engines.backends.tensorrt:TensorRtBackend",
    "openvino": "alprd.engines.backends.openvino:OpenVinoBackend",
    "onnxruntime": "alprd.engines.backends.onnxruntime:OnnxRuntimeBackend",
    "torch": "alprd.engines.backends.torch:TorchBackend",
}

_HINTS = {
    "tensorrt": "TensorRT comes with JetPack or NVIDIA's pip index (tensorrt), with a CUDA GPU",
    "openvino": "pip install 'alprd[openvino]'",
    "onnxruntime": "pip install onnxruntime",
    "torch": "needs torch and ultralytics (`make install`; a CUDA build of torch for the GPU)",
}


@cache
def load_backend(name: str) -> Backend:
    """The backend named `name`; BackendUnavailable with what to install otherwise."""
    target = BACKENDS.get(name)
    if target is None:
        raise BackendUnavailable(f"backend {name!r} is not available: {_HINTS.get(name, '')}")
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {name!r} cannot be used: {exc}; {_HINTS.get(name, '')}"
        ) from None
    backend: Backend = getattr(module, cls_name)()
    return backend


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def cuda_gpu_present() -> bool:
    """An NVIDIA GPU the driver exposes (no CUDA library is loaded to find out)."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvhost-ctrl")  # dGPU / Jetson


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str


def choose(requested: str) -> Choice:
    """Resolve ``auto``: TensorRT when importable and a CUDA GPU is present, else
    OpenVINO when installed, else ONNX Runtime."""
    if requested != "auto":
        return Choice(requested, "configured")
    has_trt, has_gpu = installed("tensorrt"), cuda_gpu_present()
    if has_trt and has_gpu:
        return Choice("tensorrt", "tensorrt importable and a CUDA GPU present")
    why = "no CUDA GPU" if has_trt else "tensorrt not installed"
    if installed("openvino"):
        return Choice("openvino", f"{why}; openvino installed")
    return Choice("onnxruntime", f"{why}; openvino not installed")
