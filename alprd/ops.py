"""Pure array operations shared by the engines and the pipeline: letterbox, YOLO
output decoding, NMS, CTC greedy decoding. No I/O, no clock, no runtime imports."""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Image = npt.NDArray[np.uint8]  # H x W x 3, BGR


class DeviceImage(abc.ABC):
    """A frame that lives on a GPU (decoded there: `alprd.pipeline.nvdec`), H x W x 3
    uint8 BGR like `Image`. An engine working on that device takes `data` as it is
    (no copy through the host); what needs pixels on the host asks for them:
    the whole frame (`host`, downloaded once), a region of it (`region`: snapshot
    files) or a small shrunk copy (`shrunk`: motion gating)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape
        self._host: Image | None = None

    @property
    @abc.abstractmethod
    def data(self) -> object:
        """The pixels on the device (the decoder's framework tensor)."""

    @abc.abstractmethod
    def download(self) -> Image:
        """The whole frame copied to the host."""

    @abc.abstractmethod
    def region(self, x1: int, y1: int, x2: int, y2: int) -> Image:
        """Pixels [y1:y2, x1:x2] copied to the host."""

    @abc.abstractmethod
    def shrunk(self, width: int, height: int) -> Image:
        """The frame resized to width x height (area averaging), on the host."""

    @classmethod
    def shrunk_many(cls, images: Sequence[DeviceImage], width: int, height: int) -> list[Image]:
        """`shrunk` of several frames of this kind and one shape; a device class
        overrides it to resize them together and copy them back at once."""
        return [image.shrunk(width, height) for image in images]

    def host(self) -> Image:
        """The whole frame on the host (downloaded at the first call, then kept)."""
        if self._host is None:
            self._host = self.download()
        return self._host


AnyImage = Image | DeviceImage  # a frame on the host or on a GPU


def host(image: AnyImage) -> Image:
    """`image`'s pixels on the host (a host image as it is)."""
    return image.host() if isinstance(image, DeviceImage) else image


def region(image: AnyImage, x1: int, y1: int, x2: int, y2: int) -> Image:
    """A copy of `image[y1:y2, x1:x2]` on the host."""
    if isinstance(image, DeviceImage):
        return image.region(x1, y1, x2, y2)
    return image[y1:y2, x1:x2].copy()


def shrink(image: AnyImage, width: int, height: int) -> Image:
    """`image` resized to width x height by area averaging, on the host."""
    if isinstance(image, DeviceImage):
        return image.shrunk(width, height)
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), np.uint8)


def shrink_many(images: Sequence[AnyImage], sizes: Sequence[tuple[int, int]]) -> list[Image]:
    """`shrink(images[i], *sizes[i])` for each i: frames on a device of one kind,
    shape and size resized together (`DeviceImage.shrunk_many`: one copy back for
    them all instead of one a frame), host frames one by one."""
    out: list[Image | None] = [None] * len(images)
    groups: dict[tuple[type[DeviceImage], tuple[int, ...], tuple[int, int]], list[int]] = {}
    device: dict[int, DeviceImage] = {}
    for i, (image, size) in enumerate(zip(images, sizes, strict=True)):
        if isinstance(image, DeviceImage):
            groups.setdefault((type(image), tuple(image.shape), size), []).append(i)
            device[i] = image
        else:
            out[i] = shrink(image, *size)
    for (kind, _, (width, height)), members in groups.items():
        smalls = kind.shrunk_many([device[i] for i in members], width, height)
        for i, small in zip(members, smalls, strict=True):
            out[i] = small
    return [image for image in out if image is not None]  # every one filled


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input: scale, then padding."""

    scale: float
    pad_x: float
    pad_y: float

    def to_image(self, xyxy: FloatArray) -> FloatArray:
        """Boxes in network-input pixels -> boxes in source-image pixels."""
        out = xyxy.copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        return out


def fit(h: int, w: int, height: int, width: int) -> tuple[Letterbox, int, int]:
    """Where an h x w image goes in a height x width letterbox: the Letterbox, and
    the resized height and width. The one geometry of every letterbox (host, GPU)."""
    scale = min(height / h, width / w)
    nh, nw = round(h * scale), round(w * scale)
    return Letterbox(scale, float((width - nw) // 2), float((height - nh) // 2)), nh, nw


def fitted(image: Image, height: int, width: int) -> tuple[Image, Letterbox]:
    """The image resized keeping its aspect ratio to fit height x width, and where
    it goes there (`fit`)."""
    h, w = image.shape[:2]
    lb, nh, nw = fit(h, w, height, width)
    resized: Image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)  # type: ignore[assignment]
    return resized, lb


def letterbox_tensor(
    resized: Sequence[tuple[Image, Letterbox]], height: int, width: int, fill: int = 114
) -> FloatArray:
    """`fitted` images -> one float32 NCHW RGB batch in [0, 1], each padded
    (centred) with `fill` to height x width, written straight into the one float
    block (no padded uint8 canvas, no stacked copy: at 640 x 640 those were 2.4 MB
    more to allocate and fill a frame)."""
    out = np.empty((len(resized), 3, height, width), np.float32)
    pad = np.float32(fill) / np.float32(255.0)
    for i, (image, lb) in enumerate(resized):
        nh, nw = image.shape[:2]
        top, left = int(lb.pad_y), int(lb.pad_x)
        out[i, :, :top] = pad
        out[i, :, top + nh :] = pad
        out[i, :, top : top + nh, :left] = pad
        out[i, :, top : top + nh, left + nw :] = pad
        np.divide(image[..., ::-1].transpose(2, 0, 1), np.float32(255.0),
                  out=out[i, :, top : top + nh, left : left + nw], dtype=np.float32)  # fmt: skip
    return out


@dataclass(frozen=True)
class Detections:
    """Boxes of one image: xyxy (N x 4), confidence (N), class_id (N)."""

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray

    def __len__(self) -> int:
        return len(self.confidence)

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        )


@dataclass(frozen=True)
class Candidates:
    """Boxes of a batch of images, flat: the image each belongs to (N), xyxy
    (N x 4), confidence (N), class_id (N). What passed the score threshold (before
    NMS), or what NMS kept (`suppress`: grouped by image, best first)."""

    image: IntArray
    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray

    def __len__(self) -> int:
        return len(self.confidence)

    @staticmethod
    def from_table(table: FloatArray) -> Candidates:
        """From rows of [image, cx, cy, w, h, score, class] (what a device filter
        sends back in one copy)."""
        return Candidates(
            table[:, 0].astype(np.int64), _xyxy(table[:, 1:3], table[:, 3:5]),
            table[:, 5].astype(np.float32),
            table[:, 6].astype(np.int64),
        )  # fmt: skip

    @staticmethod
    def empty() -> Candidates:
        return Candidates(np.zeros(0, np.int64), np.zeros((0, 4), np.float32),
                          np.zeros(0, np.float32), np.zeros(0, np.int64))  # fmt: skip

    @staticmethod
    def concat(parts: Sequence[Candidates]) -> Candidates:
        """One batch of several (their `image` already numbered in the batch)."""
        if not parts:
            return Candidates.empty()
        if len(parts) == 1:
            return parts[0]
        return Candidates(
            np.concatenate([p.image for p in parts]), np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.class_id for p in parts]),
        )  # fmt: skip

    def take(self, idx: IntArray) -> Candidates:
        return Candidates(self.image[idx], self.xyxy[idx], self.confidence[idx], self.class_id[idx])

    def split(self, images: int) -> list[Detections]:
        """Per-image Detections (the rows must be grouped by image, as `suppress`
        leaves them)."""
        bounds = np.searchsorted(self.image, np.arange(images + 1))
        return [
            Detections(self.xyxy[a:b], self.confidence[a:b], self.class_id[a:b])
            for a, b in itertools.pairwise(bounds)
        ]


def _xyxy(cxcy: FloatArray, wh: FloatArray) -> FloatArray:
    """Centre and size (N x 2 each) -> corners (N x 4)."""
    return np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1).astype(np.float32)


def candidates(output: FloatArray, conf: float, keep: IntArray | None = None) -> Candidates:
    """YOLOv8/11 head output (B x (4 + classes) x anchors, boxes as cx, cy, w, h in
    input pixels, class scores already sigmoid) -> the anchors whose best class
    scores at least `conf` (and, with `keep`, is one of those class ids), the
    whole batch at once."""
    scores = output[:, 4:, :]
    best = scores.max(axis=1)  # B x anchors, reduced in place (argmax over the
    b, a = np.nonzero(best >= conf)  # class axis would copy all the scores first)
    class_id = scores[b, :, a].argmax(axis=1)  # only for what passed
    if keep is not None:
        kept = np.isin(class_id, keep)
        b, a, class_id = b[kept], a[kept], class_id[kept]
    return Candidates(b.astype(np.int64), _xyxy(output[b, :2, a], output[b, 2:4, a]),
                      best[b, a].astype(np.float32), class_id.astype(np.int64))  # fmt: skip


def suppress(c: Candidates, iou: float, max_det: int = 100) -> Candidates:
    """Class-aware NMS of a batch's candidates in one call (each image's classes
    are its own): what is kept, grouped by image in order, best first within
    each, at most `max_det` per image."""
    if not len(c):
        return c
    classes = int(c.class_id.max()) + 1
    kept = nms(c.xyxy, c.confidence, c.image * classes + c.class_id, iou)  # best first
    kept = kept[np.argsort(c.image[kept], kind="stable")]
    image = c.image[kept]
    first = np.searchsorted(image, image)  # each row's image's first row
    return c.take(kept[np.arange(len(kept)) - first < max_det])


def decode_yolo(output: FloatArray, conf: float, iou: float, max_det: int = 100
                ) -> list[Detections]:  # fmt: skip
    """YOLOv8/11 head output (see `candidates`) -> per-image detections after
    class-aware NMS (one NMS call for the whole batch)."""
    return suppress(candidates(output, conf), iou, max_det).split(len(output))


def nms(xyxy: FloatArray, scores: FloatArray, class_id: IntArray, iou: float) -> IntArray:
    """Class-aware non-maximum suppression; indices kept, best first."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_id.tolist(), 0.0, iou)
    idx = np.asarray(kept, dtype=np.int64).reshape(-1)
    order: IntArray = idx[np.argsort(-scores[idx], kind="stable")]
    return order


def box_iou(a: FloatArray, b: FloatArray) -> FloatArray:
    """Pairwise IoU of xyxy boxes: len(a) x len(b)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def ctc_greedy(probs: FloatArray, blank: int = 0) -> list[tuple[list[int], list[float]]]:
    """Best path of CTC output (B x T x C probabilities): per image, the class
    indices (repeats collapsed, blanks removed) and each one's probability."""
    out = []
    for seq in probs:
        best = seq.argmax(axis=1)
        conf = seq[np.arange(len(seq)), best]
        keep = (best != blank) & np.concatenate([[True], best[1:] != best[:-1]])
        out.append((best[keep].tolist(), conf[keep].astype(float).tolist()))
    return out
