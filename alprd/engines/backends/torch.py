"""PyTorch (CUDA): for NVIDIA hosts without TensorRT, and to serve while a TensorRT
engine builds. Detectors (Ultralytics YOLO) and alprd's own plate recogniser
(`alprd train-ocr`); another recogniser (PP-OCRv5) runs on ONNX Runtime / OpenVINO
(set ``models.ocr.backend``).

The artefact is the network's weights with the name of its architecture (an
Ultralytics YAML, or alprd's recogniser with its dimensions): `alprd.engines.lift`
rebuilt it from the ONNX and checked it reproduces it. Loading builds that module once, fuses it, moves it to the GPU in
fp16, and captures one **CUDA graph per input shape** on first use: a replay
launches the whole network at once (about 1 ms for a YOLOv8n at batch 1 on an H100,
against ~10 ms launching its kernels one by one). Inputs go through a pinned host
buffer. `run_frames` letterboxes and normalises uint8 frames on the GPU.

Measured on an H100 through the workplace's device tool (see BENCHMARKS.md); the
CPU path (no CUDA) is what the tests here run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from alprd import ops
from alprd.engines.backends._cpu import cpu_identity
from alprd.engines.base import BuildRequest, EngineError, Progress

ARTEFACT_FORMAT = "alprd-torch-1"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pinned_frame(shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    """A uint8 host buffer the GPU copies from directly (page-locked). It comes
    from torch's caching host allocator: a freed buffer (the array is garbage) is
    reused for the next one, not pinned again. Cameras decode into these when this
    backend serves, which saves a copy of every frame on the inference thread."""
    array: npt.NDArray[np.uint8] = torch.empty(shape, dtype=torch.uint8, pin_memory=True).numpy()
    return array


class _Graph:
    """One captured CUDA graph: static input, static outputs."""

    def __init__(self, module: torch.nn.Module, x: torch.Tensor) -> None:
        self.input = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm-up (cuDNN picks its kernels) off the capture
                module(self.input)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.output = module(self.input)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.input.copy_(x, non_blocking=True)
        self.graph.replay()
        return self.output


class TorchEngine:
    backend = "torch"

    def __init__(self, module: torch.nn.Module, precision: str, graphs: bool = True) -> None:
        self.device = _device()
        self.dtype = torch.float16 if precision == "fp16" and self.device.type == "cuda" else None
        module = module.to(self.device).eval()
        if self.dtype is not None:
            module = module.half()
        self.module = module
        self.precision = precision
        self.graphs_enabled = graphs and self.device.type == "cuda"
        self._graphs: dict[tuple[int, ...], _Graph] = {}
        self._pinned: dict[tuple[tuple[int, ...], Any], torch.Tensor] = {}
        self._staging: torch.Tensor | None = None
        #: what a camera should decode frames into (None: plain numpy arrays)
        self.allocate_frame = pinned_frame if self.device.type == "cuda" else None

    # ------------------------------------------------------------------ engine

    def run(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        x = self._upload(np.ascontiguousarray(batch, dtype=np.float32))
        return [self._infer(x).float().cpu().numpy()]

    def run_frames(
        self,
        images: Sequence[ops.Image],
        height: int,
        width: int,
        fill: int = 114,
        min_score: float | None = None,
    ) -> tuple[list[npt.NDArray[np.float32]], list[ops.Letterbox]]:
        """Letterbox uint8 BGR frames to height x width on the GPU (as
        `ops.letterbox` + `ops.to_tensor` do on the CPU) and run them as one batch.
        Frames of one shape are resized together (one kernel per shape, not per
        frame). Returns each frame's (4 + classes) x anchors output; with
        `min_score`, only the anchors whose best class scores at least that (what
        `ops.decode_yolo` keeps) come back to the host: a few columns instead of
        thousands."""
        dtype = self.dtype or torch.float32
        x = torch.full((len(images), 3, height, width), fill / 255.0, dtype=dtype,
                       device=self.device)  # fmt: skip
        boxes: list[ops.Letterbox] = [ops.Letterbox(1.0, 0.0, 0.0)] * len(images)
        for idx, frames in self._frames_on_device(images):
            h, w = frames.shape[1:3]
            scale = min(height / h, width / w)
            nh, nw = round(h * scale), round(w * scale)
            top, left = (height - nh) // 2, (width - nw) // 2
            rgb = frames.permute(0, 3, 1, 2).flip(1).to(dtype) / 255.0
            resized = F.interpolate(rgb, size=(nh, nw), mode="bilinear", align_corners=False)
            x[torch.as_tensor(idx, device=self.device), :, top : top + nh, left : left + nw] = resized
            for i in idx:
                boxes[i] = ops.Letterbox(scale, float(left), float(top))
        out = self._infer(x)  # N x (4 + classes) x anchors, on the device
        # (both ways below wait for the device: the frames' copies are done before
        # the caller may reuse their host buffers)
        if min_score is None:
            return list(out.float().cpu().numpy()), boxes
        keep = out[:, 4:, :].amax(dim=1) >= min_score  # N x anchors
        counts = keep.sum(dim=1).tolist()
        picked = out.permute(0, 2, 1)[keep].float().cpu().numpy()  # kept anchors x (4 + C)
        preds, at = [], 0
        for n in counts:
            preds.append(np.ascontiguousarray(picked[at : at + n].T))
            at += n
        return preds, boxes

    def _frames_on_device(
        self, images: Sequence[ops.Image]
    ) -> list[tuple[list[int], torch.Tensor]]:
        """The uint8 frames on the device, grouped by shape: (indices into
        `images`, G x H x W x 3). Frames in page-locked memory (`pinned_frame`: a
        camera decodes into those when this backend serves) are copied straight
        from there; others are first packed into one reused pinned staging buffer
        and copied in one go. The same array passed twice is copied once."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape), []).append(i)
        first: dict[int, int] = {}  # id(array) -> index of its first occurrence
        for i, img in enumerate(images):
            first.setdefault(id(img), i)
        if self.device.type != "cuda":
            return [
                (idx, torch.stack([torch.from_numpy(np.ascontiguousarray(images[i])) for i in idx]))
                for idx in groups.values()
            ]
        unique = [images[i] for i in sorted(set(first.values()))]
        hosts = {id(img): torch.from_numpy(img) for img in unique if img.flags.c_contiguous}
        if len(hosts) == len(unique) and all(t.is_pinned() for t in hosts.values()):
            device = {k: t.to(self.device, non_blocking=True) for k, t in hosts.items()}
        else:
            device = self._staged(unique)
        out = []
        for shape, idx in groups.items():
            batch = torch.empty((len(idx), *shape), dtype=torch.uint8, device=self.device)
            for j, i in enumerate(idx):
                batch[j].copy_(device[id(images[i])])
            out.append((idx, batch))
        return out

    def _staged(self, images: Sequence[ops.Image]) -> dict[int, torch.Tensor]:
        """Pageable arrays to the device through one pinned staging buffer (grown
        as needed, never re-pinned per shape): one host-to-device copy."""
        sizes = [int(img.size) for img in images]
        total = sum(sizes)
        if self._staging is None or self._staging.numel() < total:
            grown = 2 * self._staging.numel() if self._staging is not None else 0
            self._staging = torch.empty(max(total, grown), dtype=torch.uint8).pin_memory()
        host = self._staging.numpy()
        at = 0
        for img, n in zip(images, sizes, strict=True):
            host[at : at + n] = np.ascontiguousarray(img).reshape(-1)
            at += n
        # synchronous from pinned memory: the buffer is reused by the next call
        packed = self._staging[:total].to(self.device)
        out, at = {}, 0
        for img, n in zip(images, sizes, strict=True):
            out[id(img)] = packed[at : at + n].view(*img.shape)
            at += n
        return out

    def close(self) -> None:
        self._graphs.clear()
        self._pinned.clear()
        del self.module
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ internals

    def _upload(self, array: np.ndarray, dtype: Any = None) -> torch.Tensor:
        host = torch.from_numpy(array)
        if self.device.type != "cuda":
            return host if dtype is not None else host.to(self.dtype or torch.float32)
        key = (tuple(array.shape), host.dtype)
        pinned = self._pinned.get(key)
        if pinned is None:
            pinned = self._pinned[key] = torch.empty_like(host).pin_memory()
        pinned.copy_(host)
        out = pinned.to(self.device, non_blocking=True)
        return out if dtype is not None else out.to(self.dtype or torch.float32)

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype or torch.float32)
        if not self.graphs_enabled:
            with torch.inference_mode():
                out: torch.Tensor = self.module(x)
            return out
        key = tuple(x.shape)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = _Graph(self.module, x)
        return graph(x)


class TorchBackend:
    name: ClassVar[str] = "torch"
    extension: ClassVar[str] = ".torch.pt"
    precisions: ClassVar[tuple[str, ...]] = ("fp16", "fp32")

    def runtime_version(self) -> str:
        return f"{torch.__version__} cuda {torch.version.cuda or 'none'}"

    def device_identity(self) -> dict[str, str]:
        if not torch.cuda.is_available():
            return {**cpu_identity(), "device": "cpu"}
        major, minor = torch.cuda.get_device_capability()
        return {"gpu": torch.cuda.get_device_name(), "capability": f"{major}.{minor}"}

    def build(self, onnx: Path, request: BuildRequest, out: Path, progress: Progress) -> None:
        from alprd.engines import lift

        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "False")
        hint = f"set models.{request.role}.backend to onnxruntime or openvino"
        if request.kind != "detector":
            progress("rebuilding the recogniser as a torch module")
            module, dims = lift.platenet_from_onnx(onnx, hint=hint)
            saved = {"arch": lift.PLATENET, "dims": dims, "names": {}}
        else:
            progress("rebuilding the detector as a torch module")
            lifted = lift.yolo_from_onnx(onnx, hint=hint)
            module = lifted.module
            saved = {"arch": lifted.arch, "names": lifted.names}
        torch.save({"format": ARTEFACT_FORMAT, **saved, "state_dict": module.state_dict()}, out)

    def load(self, path: Path, request: BuildRequest) -> TorchEngine:
        from alprd.engines import lift

        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise EngineError(f"{path}: not a torch engine of this alprd: {exc}") from None
        if not isinstance(saved, dict) or saved.get("format") != ARTEFACT_FORMAT:
            raise EngineError(f"{path}: not a {ARTEFACT_FORMAT} artefact")
        if saved.get("arch") == lift.PLATENET:
            module = lift.fused_platenet(saved["dims"])
            module.load_state_dict(saved["state_dict"])
            return TorchEngine(module, request.precision)
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "False")
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel(saved["arch"], nc=len(saved["names"]) or 80, verbose=False)
        model.fuse(verbose=False)
        model.load_state_dict(saved["state_dict"])
        return TorchEngine(lift.FirstOutput(model.eval()), request.precision)
