"""PyTorch (CUDA): for NVIDIA hosts without TensorRT, and to serve while a TensorRT
engine builds. Detectors (Ultralytics YOLO) and alprd's own plate recogniser
(`alprd train-ocr`); another recogniser (PP-OCRv5) runs on ONNX Runtime / OpenVINO
(set ``models.ocr.backend``).

The artefact is the network's weights with the name of its architecture (an
Ultralytics YAML, or alprd's recogniser with its dimensions): `alprd.engines.lift`
rebuilt it from the ONNX and checked it reproduces it. Loading builds that module
once, fuses it, moves it to the GPU in fp16 and NHWC, and captures one **CUDA
graph per input shape** (batch sizes are powers of two: `any_batch`) on first use:
a replay launches the whole network at once (about 1 ms for a YOLOv8n at batch 1
on an H100, against ~10 ms launching its kernels one by one).

Frames reach the GPU once per batch (`upload`: straight from the page-locked
buffers cameras decode into, `pinned_frame`), are letterboxed there for the
vehicle detector (`launch_frames`), and the plate detector samples its vehicle
regions from them (`launch_regions`): no crop is cut or copied on the host. Only the
candidates above the score threshold come back.

Measured on one NVIDIA H100 (see BENCHMARKS.md); the
CPU path (no CUDA) is what `make test` runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from alprd import ops
from alprd.engines.backends._cpu import cpu_identity
from alprd.engines.backends._torch_parts import (
    Graph,
    TorchFrames,
    Uploads,
    pinned_frame,
    sample,
    small,
)
from alprd.engines.base import (
    Backend,
    BuildRequest,
    Cut,
    DeviceEngine,
    DeviceFrames,
    EngineError,
    Keep,
    Pending,
    Progress,
    Region,
)

T = TypeVar("T")

ARTEFACT_FORMAT = "alprd-torch-1"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchEngine:
    backend = "torch"
    #: takes frames on its device (`upload`) and pre-processes them there
    on_device = True
    streams = 1

    def __init__(self, module: torch.nn.Module, precision: str, graphs: bool = True) -> None:
        self.device = _device()
        self.dtype = torch.float16 if precision == "fp16" and self.device.type == "cuda" else None
        module = module.to(self.device).eval()
        if self.dtype is not None:
            module = module.half()
        #: NHWC on the GPU: cuDNN's tensor-core kernels want it (with NCHW each
        #: convolution transposes its input and output: ~17% of the GPU's time)
        self.memory_format = torch.channels_last if self.device.type == "cuda" else None
        if self.memory_format is not None:
            module = module.to(memory_format=self.memory_format)
        self.module = module
        self.precision = precision
        self.graphs_enabled = graphs and self.device.type == "cuda"
        self._graphs: dict[tuple[int, ...], Graph] = {}
        self._uploads = Uploads(self.device)
        self._ids: dict[tuple[int, ...], torch.Tensor] = {}  # class filters on the device
        #: any batch size runs (a CUDA graph per size): callers pad to `bucket`
        #: sizes up to the configured batch instead of always to it
        self.any_batch = True
        #: works on a GPU: batches in flight at once pay off (`engines.lanes`)
        self.gpu = self.device.type == "cuda"
        #: what a camera should decode frames into (None: plain numpy arrays)
        self.allocate_frame: Callable[[tuple[int, ...]], ops.Image] | None = (
            pinned_frame if self.device.type == "cuda" else None
        )

    # ------------------------------------------------------------------ engine

    def warm(self, shape: tuple[int, int, int], batch: int) -> None:
        """Capture the CUDA graphs of every batch size callers pad to (powers of
        two up to `batch`: `alprd.pipeline.detect.bucket`) for inputs of `shape`:
        a capture takes a few hundred ms, better at load (or in the thread that
        loads a swapped-in engine) than in the middle of a stream."""
        if not self.graphs_enabled:
            return
        size = 1
        while True:
            b = min(size, batch)
            x = torch.zeros((b, *shape), dtype=self.dtype or torch.float32, device=self.device)
            self._infer(x, lambda y: None)
            if b == batch:
                break
            size *= 2
        torch.cuda.synchronize()

    def run(self, batch: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        x = self._uploads.one(np.ascontiguousarray(batch, dtype=np.float32))
        return [self._infer(x, lambda y: y.float().cpu()).numpy()]

    def run_many(
        self, batches: Sequence[npt.NDArray[np.float32]]
    ) -> list[list[npt.NDArray[np.float32]]]:
        return [self.run(b) for b in batches]

    def _own(self, frames: Sequence[ops.Image] | DeviceFrames) -> TorchFrames:
        """`frames` as this engine's own upload (host arrays, or another
        engine's frames, uploaded now)."""
        if isinstance(frames, TorchFrames):
            return frames
        return self.upload(list(frames.arrays if isinstance(frames, DeviceFrames) else frames))

    def upload(self, images: Sequence[ops.AnyImage]) -> TorchFrames:
        """The frames on the device, once for every stage of a batch (the vehicle
        letterbox, then the plate crops). Frames decoded on the GPU
        (`ops.DeviceImage`: a camera decoded with NVDEC) are used where they are;
        frames in page-locked memory (`pinned_frame`: cameras decode into those when
        this backend serves) are copied straight from there; others are first
        packed into one reused pinned staging buffer and copied in one go. The same
        array twice is copied once."""
        groups: dict[tuple[int, ...], list[int]] = {}  # shape -> ids, first-seen order
        unique: dict[int, ops.AnyImage] = {}
        for img in images:
            if id(img) not in unique:
                unique[id(img)] = img
                groups.setdefault(tuple(img.shape), []).append(id(img))
        sources = {k: self._on_device(v) for k, v in unique.items()
                   if isinstance(v, ops.DeviceImage)}  # fmt: skip
        host = {k: v for k, v in unique.items() if not isinstance(v, ops.DeviceImage)}
        if self.device.type != "cuda":
            sources |= {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in host.items()}
        elif host:
            pinned = {k: torch.from_numpy(v) for k, v in host.items() if v.flags.c_contiguous}
            if len(pinned) < len(host) or not all(t.is_pinned() for t in pinned.values()):
                pinned = self._uploads.packed(list(host.values()))
            sources |= pinned
        tensors: list[torch.Tensor] = []
        where: dict[int, tuple[int, int]] = {}
        for g, (shape, ids) in enumerate(groups.items()):
            where |= {k: (g, pos) for pos, k in enumerate(ids)}
            if all(k not in host for k in ids):  # all on the device: one kernel
                tensors.append(torch.stack([sources[k] for k in ids]))
                continue
            group = torch.empty((len(ids), *shape), dtype=torch.uint8, device=self.device)
            for pos, k in enumerate(ids):
                group[pos].copy_(sources[k], non_blocking=True)  # DMA from pinned frames
            tensors.append(group)
        return TorchFrames(list(images), [where[id(img)] for img in images], tensors, {})

    def _on_device(self, image: ops.DeviceImage) -> torch.Tensor:
        """A frame decoded on the GPU as a tensor on this engine's device. Its
        memory is marked in use by this stream until the copy out of it is done
        (its decoder thread may free it meanwhile)."""
        data = image.data
        tensor = data if isinstance(data, torch.Tensor) else torch.from_dlpack(data)
        if tensor.device.type != self.device.type:
            return tensor.to(self.device)
        if tensor.is_cuda:
            tensor.record_stream(torch.cuda.current_stream(self.device))
        return tensor

    def launch_frames(
        self,
        frames: Sequence[ops.Image] | DeviceFrames,
        height: int,
        width: int,
        fill: int = 114,
        min_score: float = 0.0,
        keep: Keep = None,
    ) -> tuple[Pending[ops.Candidates], list[ops.Letterbox]]:
        """Letterbox uint8 BGR frames to height x width on the GPU (as
        `ops.fitted` + `ops.letterbox_tensor` do on the CPU) and run them as one batch.
        Frames of one shape are resized together (one kernel per shape, not per
        frame). Returns the anchors whose best class scores at least `min_score`
        (and is one of `keep`), what `ops.candidates` keeps of the whole output:
        the score filter runs on the device, and a few rows come back instead of
        thousands of columns."""
        frames = self._own(frames)
        dtype = self.dtype or torch.float32
        x = torch.full((len(frames), 3, height, width), fill / 255.0, dtype=dtype,
                       device=self.device)  # fmt: skip
        boxes: list[ops.Letterbox] = [ops.Letterbox(1.0, 0.0, 0.0)] * len(frames)
        for g, (indices, idx, pos) in frames.by_group().items():
            h, w = frames.groups[g].shape[1:3]
            lb, nh, nw = ops.fit(h, w, height, width)
            top, left = int(lb.pad_y), int(lb.pad_x)
            rgb = frames.rgb(g, dtype)[pos]
            resized = F.interpolate(rgb, size=(nh, nw), mode="bilinear", align_corners=False)
            if len(indices) == len(frames):  # one shape: every frame, in order
                x[:, :, top : top + nh, left : left + nw] = resized
            else:
                x[idx, :, top : top + nh, left : left + nw] = resized
            for i in indices:
                boxes[i] = lb
        return self._candidates(x, min_score, keep), boxes

    def launch_regions(
        self,
        frames: DeviceFrames,
        regions: Sequence[Region],
        height: int,
        width: int,
        fill: int = 114,
        min_score: float = 0.0,
        keep: Keep = None,
    ) -> tuple[Pending[ops.Candidates], list[ops.Letterbox]]:
        """`launch_frames` on regions of frames already on the device (frame index,
        x1, y1, x2, y2 in whole pixels): each region letterboxed as
        ``ops.letterbox_tensor`` would letterbox ``frame[y1:y2, x1:x2]`` (bilinear, edges clamped to
        the region), all in one sampling call per frame shape; no crop is copied
        or uploaded. Letterboxes are relative to the region."""
        frames = self._own(frames)
        x = torch.full((len(regions), 3, height, width), fill / 255.0,
                       dtype=torch.float32, device=self.device)  # fmt: skip
        boxes = []
        plan = []  # per region: x1, y1, w, h, nw, nh, left, top
        for _, x1, y1, x2, y2 in regions:
            w, h = x2 - x1, y2 - y1
            lb, nh, nw = ops.fit(h, w, height, width)
            plan.append((x1, y1, w, h, nw, nh, lb.pad_x, lb.pad_y))
            boxes.append(lb)
        u = torch.arange(width, device=self.device, dtype=torch.float32)
        v = torch.arange(height, device=self.device, dtype=torch.float32)

        def make(g: int, mine: list[int], pos: list[int]) -> torch.Tensor:
            H = frames.groups[g].shape[1]
            table = [(*plan[k], at) for k, at in zip(mine, pos, strict=True)]
            x1, y1, w, h, nw, nh, left, top, at = small(table, self.device, torch.float32).T[
                :, :, None
            ]
            y1 = y1 + H * at  # the group's frames stacked into one tall image (the atlas)
            # the source pixel each output pixel samples (interpolate's convention)
            sx = (x1 + (u - left + 0.5) * (w / nw) - 0.5).clamp(min=x1, max=x1 + w - 1)
            sy = (y1 + (v - top + 0.5) * (h / nh) - 0.5).clamp(min=y1, max=y1 + h - 1)
            inside = ((u >= left) & (u < left + nw))[:, None, :] & ((v >= top) & (v < top + nh))[
                :, :, None
            ]
            sampled = sample(frames, g, sx[:, None, :], sy[:, :, None], "bilinear")
            return torch.where(inside[:, None], sampled, fill / 255.0)

        x = self._per_shape(frames, [r[0] for r in regions], x, make)
        return self._candidates(x, min_score, keep), boxes

    def launch_cuts(
        self,
        frames: DeviceFrames,
        cuts: Sequence[tuple[int, Cut]],
        height: int,
        width: int,
    ) -> Pending[npt.NDArray[np.float32]]:
        """The recogniser on plates cut from frames already on the device (see
        `cut_batch`); its output (len(cuts) x ...), collected later."""
        out = self._infer(self.cut_batch(frames, cuts, height, width),
                          lambda y: y.to(torch.float32, copy=True))  # fmt: skip
        return self._later(lambda: out.cpu().numpy())

    def cut_batch(
        self,
        frames: DeviceFrames,
        cuts: Sequence[tuple[int, Cut]],
        height: int,
        width: int,
    ) -> torch.Tensor:
        """The recogniser's input on the device, per plate (frame index,
        `alprd.engines.base.Cut`): the crop `alprd.pipeline.ocr.crop` makes on the host (a
        two-line cut unfolded, bicubic resize to height x width, uint8 levels, BGR
        in [-1, 1]), sampled from the frames in one call per frame shape: no crop
        is cut, resized or uploaded on the host."""
        frames = self._own(frames)
        x = torch.zeros((len(cuts), 3, height, width), dtype=torch.float32, device=self.device)
        u = torch.arange(width, device=self.device, dtype=torch.float32)[None, None, :]
        v = torch.arange(height, device=self.device, dtype=torch.float32)[None, :, None]

        def make(g: int, mine: list[int], pos: list[int]) -> torch.Tensor:
            H = frames.groups[g].shape[1]
            table = []
            for k, at in zip(mine, pos, strict=True):
                x1, y1, x2, y2, two = cuts[k][1]
                pw, ph = max(x2 - x1, 1), max(y2 - y1, 1)
                half = ph // 2 if two else ph  # an unfolded cut: half as high, twice as wide
                table.append((x1, y1 + H * at, pw, ph, half, 2 * pw if two else pw,
                              float(two), float(x2 > x1 and y2 > y1)))  # fmt: skip
            x1, y1, pw, ph, half, uw, two, real = small(table, self.device, torch.float32).T[
                :, :, None, None
            ]
            # the unfolded patch's pixel each output pixel samples (cv2.resize's
            # convention), then where that is in the frame: the right half of an
            # unfolded cut is the plate's bottom line
            ux = (u + 0.5) * (uw / width) - 0.5
            uy = (v + 0.5) * (half / height) - 0.5
            bottom = (two > 0) & (ux > pw - 0.5)
            sx = torch.minimum(torch.where(bottom, ux - pw, ux).clamp(min=0) + x1, x1 + pw - 1)
            sy = torch.minimum((uy + torch.where(bottom, half, 0.0)).clamp(min=0) + y1,
                               y1 + ph - 1)  # fmt: skip
            sampled = sample(frames, g, sx, sy, "bicubic")
            # uint8 levels as cv2 leaves them, BGR, [-1, 1]; an empty cut is 0
            levels = (sampled.flip(1) * 255.0).round().clamp(0, 255)
            return (levels / 127.5 - 1.0) * real[:, None]

        return self._per_shape(frames, [i for i, _ in cuts], x, make)

    def _per_shape(
        self, frames: TorchFrames, owners: Sequence[int], x: torch.Tensor,
        make: Callable[[int, list[int], list[int]], torch.Tensor],
    ) -> torch.Tensor:  # fmt: skip
        """`x` (one row per item) filled one frame shape at a time: for the items
        whose frame (`owners[k]`) has shape group g, `make(g, items, positions of
        their frames in the group)` gives their rows (one sampling call a shape)."""
        slots = [frames.slots[i] for i in owners]
        groups = sorted({g for g, _ in slots})
        for g in groups:
            mine = [k for k, (gg, _) in enumerate(slots) if gg == g]
            rows = make(g, mine, [slots[k][1] for k in mine])
            if len(groups) == 1:
                return rows
            x[small(mine, self.device)] = rows
        return x

    def _candidates(self, x: torch.Tensor, min_score: float,
                    keep: Keep) -> Pending[ops.Candidates]:  # fmt: skip
        """`ops.candidates` of the detector's output for `x` (N x (4 + classes) x
        anchors), on the device: best class, score and class filter there; the
        result is one table of the rows kept (image, box, score, class: 7 numbers
        per anchor kept), collected later. Collecting waits for the device: the
        frames' copies are done before the caller reuses their buffers."""

        def consume(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            best, class_id = out[:, 4:, :].max(dim=1)  # N x anchors
            mask = best >= min_score
            if keep is not None:
                key = tuple(keep)
                if key not in self._ids:
                    self._ids[key] = torch.as_tensor(key, dtype=class_id.dtype).to(self.device)
                mask &= torch.isin(class_id, self._ids[key])
            rows = torch.cat([out[:, :4, :], best[:, None], class_id[:, None].to(out.dtype)],
                             dim=1).float()  # fmt: skip  # N x 6 x anchors, ours
            return mask, rows

        mask, rows = self._infer(x, consume)

        def collect() -> ops.Candidates:
            b, a = mask.nonzero(as_tuple=True)  # waits for the device
            table = torch.cat([b[:, None].float(), rows[b, :, a]], dim=1)
            return ops.Candidates.from_table(table.cpu().numpy())

        return self._later(collect)

    def _later(self, collect: Callable[[], T]) -> Pending[T]:
        """`collect` run later on the stream current now (a lane's: `stream`)."""
        if self.device.type != "cuda":
            return Pending(collect)
        stream = torch.cuda.current_stream()

        def on_stream() -> T:
            with torch.cuda.stream(stream):
                return collect()

        return Pending(on_stream)

    def stream(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which this engine's work goes to a stream of its own (a
        lane of `alprd.pipeline.lanes.Lanes`), or a no-op off CUDA."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        own: contextlib.AbstractContextManager[Any] = torch.cuda.stream(torch.cuda.Stream())
        return own

    def close(self) -> None:
        self._graphs.clear()
        self._uploads.clear()
        del self.module
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ internals

    def _infer(self, x: torch.Tensor, consume: Callable[[torch.Tensor], T]) -> T:
        """`consume(output of the network for x)`. With CUDA graphs the output is
        the graph's own buffer: `consume` must copy what it keeps (it runs before
        another stream may replay the graph)."""
        x = x.to(self.dtype or torch.float32)
        if self.memory_format is not None and x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        if not self.graphs_enabled:
            with torch.inference_mode():
                return consume(self.module(x))
        key = tuple(x.shape)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = Graph(self.module, x)
        with graph.use():
            return consume(graph(x))


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
            saved: dict[str, Any] = {"arch": lift.PLATENET, "dims": dims, "names": {}}
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


if TYPE_CHECKING:  # what it declares, checked by mypy
    _engine: type[DeviceEngine] = TorchEngine
    _frames: type[DeviceFrames] = TorchFrames
    _backend: type[Backend] = TorchBackend
