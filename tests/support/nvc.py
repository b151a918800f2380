"""A stand-in for NVIDIA's PyNvVideoCodec, for hosts without an NVIDIA GPU (the
real one needs the driver's video decoder): the calls alprd makes, answered on
the CPU. The demuxer's "packets" are the file's frames decoded by OpenCV; the
"decoder" hands them back as RGB torch tensors (on the CPU), holding `latency`
of them until the demuxer's final empty packet, as NVDEC holds frames in its
default latency mode. The real library is measured on an NVIDIA H100 by
`make bench-gpu` (BENCHMARKS.md)."""

from __future__ import annotations

from typing import Any

import cv2
import torch


class cudaVideoCodec:
    MPEG2 = 1
    H264 = 4
    HEVC = 8
    JPEG = 5
    AV1 = 11


class OutputColorType:
    NATIVE = 0
    RGB = 1


END = b""  # the demuxer's last packet: empty, it flushes the decoder


class Demuxer:
    def __init__(self, filename: str, codec: int) -> None:
        cap = cv2.VideoCapture(filename)
        if not cap.isOpened():
            raise RuntimeError(f"PyNvDemuxer constructor failed: cannot open {filename}")
        self.fps = cap.get(cv2.CAP_PROP_FPS)
        self.frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            self.frames.append(frame)
        cap.release()
        self.codec = codec

    def GetNvCodecId(self) -> int:
        return self.codec

    def FrameRate(self) -> float:
        return self.fps

    def __iter__(self):
        yield from self.frames
        yield END


class Decoder:
    def __init__(self, latency: int, kwargs: dict[str, Any]) -> None:
        self.latency, self.kwargs = latency, kwargs
        self.held: list[torch.Tensor] = []

    def Decode(self, packet: Any) -> list[torch.Tensor]:
        if packet is END:
            out, self.held = self.held, []
            return out
        self.held.append(torch.from_numpy(cv2.cvtColor(packet, cv2.COLOR_BGR2RGB)))
        out = self.held[: max(0, len(self.held) - self.latency)]
        self.held = self.held[len(out) :]
        return out


class StandIn:
    """The module: `CreateDemuxer`, `CreateDecoder` and the enums. `codec`: what
    the demuxer says every source is coded in."""

    cudaVideoCodec = cudaVideoCodec
    OutputColorType = OutputColorType

    def __init__(self, codec: int = cudaVideoCodec.H264, latency: int = 2) -> None:
        self.codec, self.latency = codec, latency
        self.decoders: list[Decoder] = []

    def CreateDemuxer(self, filename: str) -> Demuxer:
        return Demuxer(filename, self.codec)

    def CreateDecoder(self, **kwargs: Any) -> Decoder:
        self.decoders.append(Decoder(self.latency, kwargs))
        return self.decoders[-1]
