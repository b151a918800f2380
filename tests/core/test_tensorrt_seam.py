"""The TensorRT backend at its import seam.

TensorRT cannot be installed on any machine of this project (the registry's
packages are stubs that download from NVIDIA), so a stand-in `tensorrt` module
records what the backend asks of the builder. This is the one fake in the engine
suite; everything else runs on real ONNX Runtime / OpenVINO engines."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from alprd.engines import registry
from alprd.engines.base import BuildRequest, InputShape, Tolerances


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []


def fake_tensorrt(rec: Recorder) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Flag:
        FP16 = "FP16"
        INT8 = "INT8"

    class Pool:
        WORKSPACE = "WORKSPACE"

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            rec.calls.append(("profile", name, lo, opt, hi))

    class Config:
        int8_calibrator = None

        def set_memory_pool_limit(self, pool, size):
            rec.calls.append(("pool", pool, size))

        def set_flag(self, flag):
            rec.calls.append(("flag", flag))

        def add_optimization_profile(self, profile):
            rec.calls.append(("add_profile",))

    class Builder:
        def __init__(self, logger):
            pass

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

    class Calibrator:
        def __init__(self):
            pass

    trt.Logger = Logger
    trt.BuilderFlag = Flag
    trt.MemoryPoolType = Pool
    trt.Builder = Builder
    trt.IInt8EntropyCalibrator2 = Calibrator
    return trt


class Network:
    def get_input(self, i):
        return types.SimpleNamespace(name="images")


@pytest.fixture
def trt_backend(monkeypatch):
    rec = Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(rec))
    sys.modules.pop("alprd.engines.backends.tensorrt", None)
    module = importlib.import_module("alprd.engines.backends.tensorrt")
    yield module, rec
    sys.modules.pop("alprd.engines.backends.tensorrt", None)


def request(precision: str, shape: InputShape, calibration=()) -> BuildRequest:
    return BuildRequest(
        role="plate" if shape.width else "ocr",
        source=Path("/m/plate.pt"),
        backend="tensorrt",
        precision=precision,
        shape=shape,
        workspace_gb=2.0,
        calibration=tuple(calibration),
        validation=(),
        tolerances=Tolerances(),
    )


def test_fp16_sets_the_flag_workspace_and_a_fixed_profile(trt_backend):
    module, rec = trt_backend
    builder = module.trt.Builder(None)
    module.builder_config(builder, Network(), request("fp16", InputShape(2, 416, 416)))
    assert ("pool", "WORKSPACE", 2 * 1024**3) in rec.calls
    assert ("flag", "FP16") in rec.calls and ("flag", "INT8") not in rec.calls
    assert ("profile", "images", (2, 3, 416, 416), (2, 3, 416, 416), (2, 3, 416, 416)) in rec.calls
    assert rec.calls[-1] == ("add_profile",)


def test_fp32_sets_no_reduced_precision_flag(trt_backend):
    module, rec = trt_backend
    module.builder_config(
        module.trt.Builder(None), Network(), request("fp32", InputShape(1, 640, 640))
    )
    assert [c for c in rec.calls if c[0] == "flag"] == []


def test_dynamic_width_recogniser_gets_a_min_opt_max_profile(trt_backend):
    module, rec = trt_backend
    module.builder_config(
        module.trt.Builder(None), Network(), request("fp16", InputShape(1, 48, None))
    )
    assert ("profile", "images", (1, 3, 48, 48), (1, 3, 48, 320), (1, 3, 48, 960)) in rec.calls


def test_int8_sets_both_flags_and_feeds_calibration_batches(trt_backend, tmp_path):
    import cv2
    import numpy as np

    module, rec = trt_backend
    images = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), np.full((100, 200, 3), i * 40, np.uint8))
        images.append(p)
    config = module.builder_config(
        module.trt.Builder(None), Network(), request("int8", InputShape(2, 416, 416), images)
    )
    assert ("flag", "FP16") in rec.calls and ("flag", "INT8") in rec.calls
    calibrator = config.int8_calibrator
    assert calibrator.get_batch_size() == 2
    assert [b.shape for b in calibrator._batches] == [(2, 3, 416, 416), (2, 3, 416, 416)]


def test_auto_prefers_tensorrt_only_with_a_gpu(monkeypatch):
    """A fake at the registry's two probes, declared: TensorRT and an NVIDIA GPU
    cannot be present on the CPU machine this suite runs on, and OpenVINO, which
    is installed there, is made to look absent for the last case. What runs for
    real here (OpenVINO installed, no GPU) is checked without fakes below."""
    monkeypatch.setattr(registry, "installed", lambda m: m in ("tensorrt", "openvino"))
    monkeypatch.setattr(registry, "cuda_gpu_present", lambda: True)
    assert registry.choose("auto") == registry.Choice(
        "tensorrt", "tensorrt importable and a CUDA GPU present"
    )
    monkeypatch.setattr(registry, "cuda_gpu_present", lambda: False)
    assert registry.choose("auto").backend == "openvino"
    monkeypatch.setattr(registry, "installed", lambda m: False)
    assert registry.choose("auto") == registry.Choice(
        "onnxruntime", "tensorrt not installed; openvino not installed"
    )
    assert registry.choose("onnxruntime") == registry.Choice("onnxruntime", "configured")


def test_auto_on_this_machine_is_openvino_without_a_fake():
    if registry.cuda_gpu_present():
        pytest.skip("needs a GPU-less machine: this one exposes an NVIDIA GPU")
    assert registry.installed("openvino") and not registry.installed("tensorrt")
    assert registry.choose("auto").backend == "openvino"


def test_an_absent_runtime_is_a_clear_error_not_an_import_crash():
    registry.load_backend.cache_clear()
    with pytest.raises(registry.BackendUnavailable, match="backend 'tensorrt' cannot be used"):
        registry.load_backend("tensorrt")
    with pytest.raises(registry.BackendUnavailable, match="backend 'nope' is not available"):
        registry.load_backend("nope")


def test_while_tensorrt_builds_the_gpu_serves_through_torch(monkeypatch) -> None:
    """Background start-up on an NVIDIA host: while the TensorRT engines build,
    the torch backend serves on the same GPU (fp16, built in seconds), ONNX Runtime
    on the CPU behind it; elsewhere ONNX Runtime alone. The GPU is the seam here
    (none on a CPU host): `cuda_gpu_present` is told there is one."""
    from alprd.engines import manager

    assert manager.interim("openvino") == [("onnxruntime", "fp32")]
    monkeypatch.setattr(registry, "cuda_gpu_present", lambda: False)
    assert manager.interim("tensorrt") == [("onnxruntime", "fp32")]
    monkeypatch.setattr(registry, "cuda_gpu_present", lambda: True)
    assert manager.interim("tensorrt") == [("torch", "fp16"), ("onnxruntime", "fp32")]
    assert manager.interim("onnxruntime") == [("onnxruntime", "fp32")]
