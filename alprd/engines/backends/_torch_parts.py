"""The torch backend's parts on the device: host arrays uploaded through reused
page-locked buffers (`Uploads`), a batch's frames uploaded once (`TorchFrames`)
and sampled there, the page-locked buffers cameras decode into,
and the captured CUDA graphs. Used by `alprd.engines.backends.torch` only."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from alprd import ops


def small(values: Any, device: torch.device, dtype: Any = torch.int64) -> torch.Tensor:
    """A few numbers to the device without waiting for it (a plain
    ``torch.tensor(..., device=cuda)`` synchronises the stream: with a dozen such
    per batch the host and the GPU took turns instead of working together)."""
    return torch.as_tensor(np.asarray(values), dtype=dtype).to(device, non_blocking=True)


def pinned_frame(shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    """A uint8 host buffer the GPU copies from directly (page-locked). It comes
    from torch's caching host allocator: a freed buffer (the array is garbage) is
    reused for the next one, not pinned again. Cameras decode into these when this
    backend serves, which saves a copy of every frame on the inference thread."""
    array: npt.NDArray[np.uint8] = torch.empty(shape, dtype=torch.uint8, pin_memory=True).numpy()
    return array


def sample(frames: TorchFrames, group: int, sx: torch.Tensor, sy: torch.Tensor,
           mode: str) -> torch.Tensor:  # fmt: skip
    """Frames of one shape sampled at source pixels (`sx`, `sy`: broadcastable to
    n x height x width; `sy` counts down the group's frames stacked, `atlas`), one
    `grid_sample` for them all (edges replicated): n x 3 x height x width."""
    G, H, W = frames.groups[group].shape[:3]
    sx, sy = torch.broadcast_tensors(sx, sy)
    n, height, width = sx.shape
    grid = torch.stack([(2 * sx + 1) / W - 1, (2 * sy + 1) / (G * H) - 1], dim=-1)
    sampled = F.grid_sample(frames.atlas(group), grid.reshape(1, n * height, width, 2),
                            mode=mode, padding_mode="border", align_corners=False)  # fmt: skip
    return sampled.reshape(3, n, height, width).permute(1, 0, 2, 3)


_CAPTURE = threading.Lock()


class Graph:
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
        # one capture at a time; thread_local: the serving thread keeps working
        # while a swapped-in engine is warmed in the thread that loaded it
        with (
            _CAPTURE,
            torch.cuda.graph(self.graph, capture_error_mode="thread_local"),
            torch.inference_mode(),
        ):
            self.output = module(self.input)
        # Tensors the modules computed and cached for this input (Ultralytics' head
        # caches its anchors per input shape, batch included): the graph reads
        # them at every replay, so they must outlive the module's next cache
        # (another batch size's graph), or the replay reads freed memory.
        self.cached = [
            v for m in module.modules() for v in vars(m).values() if isinstance(v, torch.Tensor)
        ]

        self._free: torch.cuda.Event | None = None  # the last user is done with the buffers

    @contextlib.contextmanager
    def use(self) -> Iterator[None]:
        """One use of the graph's buffers (replay, then reading its output) on the
        current stream: waits (on the device) for the previous use, on whichever
        stream it was, to be done with them; the next use waits for this one."""
        if self._free is not None:
            torch.cuda.current_stream().wait_event(self._free)
        try:
            yield None
        finally:
            self._free = torch.cuda.Event()
            self._free.record()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.input.copy_(x, non_blocking=True)
        self.graph.replay()
        return self.output


@dataclass
class TorchFrames:
    """A batch's frames on the device, shared by the stages of one batch (see
    `TorchEngine.upload`). Frames of one shape are one G x H x W x 3 uint8 tensor."""

    arrays: list[ops.AnyImage]  # the frames as given (alive until the copies are done)
    slots: list[tuple[int, int]]  # frame i -> (group, position in the group)
    groups: list[torch.Tensor]
    _rgb: dict[tuple[int, Any], torch.Tensor] = field(repr=False)

    def __len__(self) -> int:
        return len(self.arrays)

    def take(self, indices: Sequence[int]) -> TorchFrames:
        """These frames (repeats allowed), sharing the tensors."""
        return TorchFrames([self.arrays[i] for i in indices], [self.slots[i] for i in indices],
                            self.groups, self._rgb)  # fmt: skip

    def by_group(self) -> dict[int, tuple[list[int], torch.Tensor, torch.Tensor]]:
        """group -> indices of its frames here (a list, and on the device), their
        positions in the group (on the device)."""
        out: dict[int, tuple[list[int], list[int]]] = {}
        for i, (g, pos) in enumerate(self.slots):
            idx, at = out.setdefault(g, ([], []))
            idx.append(i)
            at.append(pos)
        device = self.groups[0].device
        return {g: (i, small(i, device), small(p, device)) for g, (i, p) in out.items()}

    def atlas(self, group: int) -> torch.Tensor:
        """Group `group`'s frames stacked into one tall image, 1 x 3 x (G * H) x W
        RGB float32 in [0, 1]: what `grid_sample` samples regions from, in one call
        for all the frames of a shape (made once)."""
        key = (group, "atlas")
        if key not in self._rgb:
            G, H, W = self.groups[group].shape[:3]
            rgb = self.rgb(group, torch.float32)
            self._rgb[key] = rgb.permute(1, 0, 2, 3).reshape(1, 3, G * H, W)
        return self._rgb[key]

    def rgb(self, group: int, dtype: Any) -> torch.Tensor:
        """Group `group` as G x 3 x H x W RGB in [0, 1] (made once per dtype)."""
        key = (group, dtype)
        if key not in self._rgb:
            self._rgb[key] = self.groups[group].permute(0, 3, 1, 2).flip(1).to(dtype) / 255.0
        return self._rgb[key]


class Uploads:
    """Host arrays to the device through page-locked buffers, kept for reuse."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pinned: dict[tuple[tuple[int, ...], Any], torch.Tensor] = {}
        self._staging: torch.Tensor | None = None

    def one(self, array: np.ndarray) -> torch.Tensor:
        """A host array on the device (through a pinned buffer per shape, reused);
        the engine converts it to its precision."""
        host = torch.from_numpy(array)
        if self.device.type != "cuda":
            return host
        key = (tuple(array.shape), host.dtype)
        pinned = self._pinned.get(key)
        if pinned is None:
            pinned = self._pinned[key] = torch.empty_like(host).pin_memory()
        pinned.copy_(host)
        return pinned.to(self.device, non_blocking=True)

    def packed(self, images: Sequence[ops.Image]) -> dict[int, torch.Tensor]:
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

    def clear(self) -> None:
        self._pinned.clear()
        self._staging = None
