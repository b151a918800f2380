"""Cameras decoded on an NVIDIA GPU (NVDEC), through NVIDIA's PyNvVideoCodec.

Where the torch backend serves on a GPU, a camera's H.264/H.265 (and AV1, VP9,
MPEG-2/4, VC-1) stream or file is demuxed on the host (PyNvVideoCodec's FFmpeg:
RTSP, HTTP, files) and decoded by the card's video decoder into GPU memory; the
frame is converted to interleaved colour there, copied once out of the decoder's
surface (RGB to BGR in the same kernel), and enters the batch as an
`ops.DeviceImage`: it never crosses to the host, unless a host stage asks (a
snapshot region, the motion thumbnail, validation samples).

`opener_for` decides per camera (``cameras[].decoder``): "cpu" is OpenCV;
"nvdec" and "auto" (where the first engine works on a GPU) use NVDEC when the
library loads and CUDA is there, else OpenCV with one warning. A stream whose
codec NVDEC cannot decode (MJPEG over HTTP, say) falls back to OpenCV when it
is opened (`source.DecoderUnsupported`, one warning for that camera).

The library is imported on first use: hosts without it never load it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from alprd import ops
from alprd.log import get_logger, redact
from alprd.pipeline.source import Capture, DecoderUnsupported, Kind, Opener, SourceError

log = get_logger("alprd.source")

#: NVDEC's codecs (PyNvVideoCodec's `cudaVideoCodec` names) that cameras use
CODECS = ("H264", "HEVC", "AV1", "VP9", "VP8", "MPEG1", "MPEG2", "MPEG4", "VC1")
#: the sources NVDEC decodes (V4L2 devices, GStreamer pipelines, images: OpenCV)
KINDS = ("stream", "video")

#: frames resized together for motion thumbnails (their float copy is the memory)
SHRINK_CHUNK = 8

_library: Any = None
_missing: str | None = None
_lock = threading.Lock()
_warned = False


def library() -> Any:
    """PyNvVideoCodec, imported once; raises ImportError/RuntimeError saying why
    it cannot be used (not installed, no driver, no CUDA)."""
    global _library, _missing
    with _lock:
        if _library is None and _missing is None:
            try:  # the library first: where it is missing, torch is never imported
                import PyNvVideoCodec
                import torch

                if not torch.cuda.is_available():
                    raise RuntimeError("no CUDA device")
                _library = PyNvVideoCodec
            except Exception as exc:  # ImportError, or the driver's own error
                _missing = _first(exc)
        if _library is None:
            raise RuntimeError(_missing)
        return _library


class TorchImage(ops.DeviceImage):
    """A frame in GPU memory: an H x W x 3 uint8 BGR torch tensor, written (its
    decoder's stream synchronised) before it is handed on."""

    def __init__(self, tensor: Any) -> None:
        super().__init__(tuple(tensor.shape))
        self.tensor = tensor

    @property
    def data(self) -> Any:
        return self.tensor

    def download(self) -> ops.Image:
        return np.ascontiguousarray(self.tensor.cpu().numpy())

    def region(self, x1: int, y1: int, x2: int, y2: int) -> ops.Image:
        return np.ascontiguousarray(self.tensor[y1:y2, x1:x2].cpu().numpy())

    def shrunk(self, width: int, height: int) -> ops.Image:
        import torch
        import torch.nn.functional as F

        x = self.tensor.permute(2, 0, 1).unsqueeze(0).float()
        small = F.interpolate(x, size=(height, width), mode="area")
        out = small[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
        return np.ascontiguousarray(out.cpu().numpy())

    @classmethod
    def shrunk_many(cls, images: Sequence[ops.DeviceImage], width: int, height: int
                    ) -> list[ops.Image]:  # fmt: skip
        """`shrunk` of frames of one shape: resized a few at a time (the float
        copy of 8 720p frames is 88 MB), copied back in one go."""
        import torch
        import torch.nn.functional as F

        tensors = [image.tensor for image in images if isinstance(image, TorchImage)]
        if len(tensors) < len(images):
            return super().shrunk_many(images, width, height)
        parts = []
        for at in range(0, len(tensors), SHRINK_CHUNK):
            x = torch.stack(tensors[at : at + SHRINK_CHUNK]).permute(0, 3, 1, 2).float()
            parts.append(F.interpolate(x, size=(height, width), mode="area"))
        small = torch.cat(parts).permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8)
        return list(small.cpu().numpy())


class NvdecCapture:
    """One source demuxed on the host and decoded by NVDEC (a `source.Capture`).
    `nvc`: the PyNvVideoCodec module (tests give a stand-in)."""

    decoder = "nvdec"

    def __init__(self, url: str, kind: Kind, timeout_s: float, gpu: int = 0,
                 nvc: Any = None) -> None:  # fmt: skip
        if kind not in KINDS:
            raise DecoderUnsupported(_not_decodable(kind))
        try:
            nvc = nvc if nvc is not None else library()
        except Exception as exc:
            raise DecoderUnsupported(f"NVDEC is not available ({_first(exc)})") from exc
        import torch

        self.url, self._nvc = url, nvc
        try:
            self.demuxer = nvc.CreateDemuxer(filename=url)
        except Exception as exc:
            raise SourceError(f"{redact(url)}: cannot open the stream ({_first(exc)})") from exc
        codec = self.demuxer.GetNvCodecId()
        supported = {getattr(nvc.cudaVideoCodec, n) for n in CODECS
                     if hasattr(nvc.cudaVideoCodec, n)}  # fmt: skip
        if codec not in supported:
            raise DecoderUnsupported(f"NVDEC cannot decode its codec ({codec})")
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda", gpu) if cuda else torch.device("cpu")
        #: the decoder's conversion and the copy out of its surface run here
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        handle = self.stream.cuda_stream if self.stream is not None else 0
        self._reader = 0  # the thread that set the decoder's stream as its own
        try:
            self.nv_decoder = nvc.CreateDecoder(
                gpuid=gpu, codec=codec, cudacontext=0, cudastream=handle,
                usedevicememory=True, outputColorType=nvc.OutputColorType.RGB,
            )  # fmt: skip
        except Exception as exc:
            raise DecoderUnsupported(f"NVDEC refused the stream ({_first(exc)})") from exc
        self.fps = float(self.demuxer.FrameRate() or 0.0)
        self._packets = iter(self.demuxer)
        self._decoded: deque[Any] = deque()
        self._surface: Any = None  # the frame grabbed, until retrieved

    def grab(self) -> bool:
        """The next frame decoded (its surface held until the next grab); False at
        the end of a file, or when the stream broke. (The demuxer's last packet is
        an empty one: decoding it flushes the frames the decoder still holds.)"""
        self._surface = None
        try:
            while not self._decoded:
                packet = next(self._packets, None)
                if packet is None:
                    return False
                self._decoded.extend(self.nv_decoder.Decode(packet))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise SourceError(f"{redact(self.url)}: NVDEC read failed ({_first(exc)})") from exc
        self._surface = self._decoded.popleft()
        return True

    def read(self) -> TorchImage | None:
        """The next frame (`grab`, then `retrieve`); None at the end of a file, or
        when the stream broke."""
        return self.retrieve() if self.grab() else None

    def retrieve(self) -> TorchImage | None:
        """The frame grabbed last, copied out of the decoder's surface as BGR (a
        frame grabbed and not retrieved costs no copy)."""
        import torch

        surface, self._surface = self._surface, None
        if surface is None:
            return None
        try:
            if self.stream is None:
                return TorchImage(torch.from_dlpack(surface).flip(-1))
            if self._reader != threading.get_ident():
                # the thread that reads (a camera's own, which does nothing else on the
                # GPU) works on the decoder's stream: set once, not per frame
                torch.cuda.set_stream(self.stream)
                self._reader = threading.get_ident()
            # the surface as a tensor (the decoder wrote it on this stream; asked for
            # directly: torch's own negotiation of the stream costs ~0.1 ms a frame of
            # the interpreter lock), copied out as BGR: the surface is reused
            bgr = torch.from_dlpack(surface.__dlpack__(stream=self.stream.cuda_stream)).flip(-1)
            # done before the decoder may reuse its surface, and before any other
            # stream (a batch's lane) reads the frame
            self.stream.synchronize()
            return TorchImage(bgr)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise SourceError(f"{redact(self.url)}: NVDEC read failed ({_first(exc)})") from exc

    def restart(self) -> bool:
        """The same file again from its start (a looping camera), its decoder kept
        (flushed at the end of the last pass): destroying a decoder frees its
        surfaces with the interpreter lock held (33-52 ms a decoder at the median
        with 32 cameras on an H100), and every camera thread and the main loop
        wait for it.
        False where the file cannot be opened again (the camera reopens it)."""
        try:
            demuxer = self._nvc.CreateDemuxer(filename=self.url)
        except Exception:
            return False
        self.demuxer, self._packets = demuxer, iter(demuxer)
        self._decoded.clear()
        self._surface = None
        return True

    def release(self) -> None:
        self._decoded.clear()
        self._surface = None
        self.nv_decoder = None
        self.demuxer = None


def opener_for(choice: str, kind: Kind, on_gpu: bool, camera: str) -> Opener | None:
    """How camera `camera` (of `kind`) is decoded: an NVDEC opener, or None for
    OpenCV's. `choice`: ``cameras[].decoder``; `on_gpu`: the first engine works
    on a GPU (the torch backend there)."""
    if choice == "cpu" or (choice == "auto" and not on_gpu):
        return None
    if kind not in KINDS:
        if choice == "nvdec":
            log.warning("camera_decoder_fallback", camera=camera, decoder="nvdec", now="cpu",
                        reason=_not_decodable(kind))  # fmt: skip
        return None
    try:
        library()
    except Exception as exc:
        global _warned
        if not _warned:  # once per process, not per camera
            _warned = True
            log.warning(
                "nvdec_unavailable", camera=camera, reason=str(exc), now="cpu",
                hint="pip install PyNvVideoCodec (NVIDIA driver with video decode; in a "
                "container NVIDIA_DRIVER_CAPABILITIES must include video), or set "
                'cameras[].decoder = "cpu"',
            )  # fmt: skip
        return None
    return nvdec_opener()


def nvdec_opener(gpu: int = 0, nvc: Any = None) -> Opener:
    """An `Opener` decoding with NVDEC on GPU `gpu`."""

    def open_nvdec(url: str, kind: Kind, timeout_s: float) -> Capture:
        return NvdecCapture(url, kind, timeout_s, gpu=gpu, nvc=nvc)

    open_nvdec.decoder = "nvdec"  # type: ignore[attr-defined]
    return open_nvdec


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _not_decodable(kind: str) -> str:
    return f"NVDEC decodes streams and video files, not a {kind}"
