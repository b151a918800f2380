"""Plate text from a recogniser's CTC output (pure), and the crop it reads.

The recogniser (PP-OCRv5 by default) scores thousands of characters per time step.
`Alphabet` folds them onto the plate charset: a character's NFKC upper-case form
takes its probability when it is in the charset (so ``o`` and a full-width O count
for ``O``); every other character's probability moves to the CTC blank (masking them
instead turns separators into letters). Greedy decoding then gives each character
its confidence and the runner-up characters at its position.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from alprd.engines.base import Cut
from alprd.ops import Image
from alprd.pipeline.geometry import clip_box, expand
from alprd.pipeline.types import Box, Text

FloatArray = npt.NDArray[np.float32]
TOP_K = 3


class Alphabet:
    """Maps the recogniser's classes (0 = blank, 1..N = dictionary, N+1 = space)
    onto [blank] + charset."""

    def __init__(self, dictionary: Sequence[str], charset: str) -> None:
        self.charset = charset
        index = {c: i + 1 for i, c in enumerate(charset)}
        classes = ["", *dictionary, " "]
        target = np.zeros(len(classes), np.int64)
        for i, c in enumerate(classes[1:], start=1):
            folded = unicodedata.normalize("NFKC", c).upper()
            target[i] = index.get(folded, 0)
        self.num_classes = len(classes)
        self._fold = np.zeros((len(classes), len(charset) + 1), np.float32)
        self._fold[np.arange(len(classes)), target] = 1.0

    def reduce(self, probs: FloatArray) -> FloatArray:
        """(..., classes) probabilities -> (..., 1 + len(charset))."""
        if probs.shape[-1] != self.num_classes:
            raise ValueError(
                f"recogniser has {probs.shape[-1]} classes but the dictionary gives "
                f"{self.num_classes}; models.ocr.dictionary does not belong to models.ocr.source"
            )
        reduced: FloatArray = probs @ self._fold
        return reduced

    def decode(self, reduced: FloatArray) -> Text:
        """Greedy CTC on one (steps x (1 + charset)) sequence."""
        return self.decode_many(reduced[None])[0]

    def decode_many(self, reduced: FloatArray) -> list[Text]:
        """Greedy CTC on a batch (B x steps x (1 + charset)): each character with its
        probability (at the step of its run where it is most likely) and the
        `TOP_K` characters there. The arrays work is done for the batch at once;
        per plate only its runs are walked."""
        best = reduced.argmax(axis=2)  # B x T
        letters = reduced[:, :, 1:]
        top = np.argsort(-letters, axis=2, kind="stable")[:, :, :TOP_K]  # B x T x K
        top_p = np.take_along_axis(letters, top, axis=2)
        charset = self.charset
        texts = []
        for seq_best, seq_p, seq_top in zip(best.tolist(), top_p.tolist(), top.tolist(),
                                            strict=True):  # fmt: skip
            chars: list[str] = []
            confs: list[float] = []
            cands: list[tuple[tuple[str, float], ...]] = []
            t, steps = 0, len(seq_best)
            while t < steps:
                k = seq_best[t]
                end, step = t + 1, t
                while end < steps and seq_best[end] == k:
                    if seq_p[end][0] > seq_p[step][0]:  # the run's most likely step
                        step = end
                    end += 1
                if k != 0:
                    chars.append(charset[k - 1])
                    confs.append(seq_p[step][0])
                    cands.append(tuple((charset[j], p) for j, p in zip(seq_top[step], seq_p[step],
                                                                       strict=True)))  # fmt: skip
                t = end
            texts.append(Text("".join(chars), tuple(confs), tuple(cands)))
        return texts


#: The probability of its last class above which alprd's recogniser is taken to say
#: that a crop is in the wrong view (`wrong_view`).
WRONG_VIEW_P = 0.5


def wrong_view(probs: FloatArray, threshold: float = WRONG_VIEW_P) -> npt.NDArray[np.bool_]:
    """Per crop of a batch of the recogniser's raw output (B x steps x classes):
    whether it says the crop is in the wrong view. alprd's recogniser is trained to
    answer a one-line plate unfolded, or a two-line plate read as one line, with its
    last class (the contract's space) instead of text; the crop is then read again
    the other way."""
    out: npt.NDArray[np.bool_] = probs[:, :, -1].max(axis=1) > threshold
    return out


def either_view(first: FloatArray, other: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Per crop, the recogniser's output (B x steps x classes) in its first view, or
    in the other view where the first says it is the wrong one (`wrong_view`), and
    which crops took the other: what `Recognizer` serves, for both views at hand."""
    again = wrong_view(first)
    chosen: FloatArray = np.where(again[:, None, None], other, first)
    return chosen, again


def presence(text: Text) -> tuple[float, ...]:
    """Per character of a read, the probability that a character is there at all:
    the sum of its candidates (a ``B`` read at 0.48 with ``8`` at 0.45 is surely a
    character, only which one is in doubt); its confidence without candidates."""
    if not text.candidates:
        return text.char_confidences
    return tuple(min(1.0, sum(p for _, p in options)) for options in text.candidates)


def trim_edges(text: Text, min_confidence: float) -> Text:
    """Drop characters at either end that are less likely than `min_confidence`
    to be a character at all (`presence`: country bands, frame screws, sticker
    letters)."""
    c = presence(text)
    lo, hi = 0, len(c)
    while lo < hi and c[lo] < min_confidence:
        lo += 1
    while hi > lo and c[hi - 1] < min_confidence:
        hi -= 1
    return Text(text.text[lo:hi], text.char_confidences[lo:hi], text.candidates[lo:hi])


def cut(
    size: tuple[int, int], box: Box, *, margin: float, trim_y: float, two_line_aspect: float
) -> Cut:
    """Where `crop` cuts a plate from an image of `size` (height, width): the box
    with ``margin`` of its width added left and right and ``trim_y`` of its height
    removed top and bottom (the box itself when that leaves less than 2 pixels),
    clipped to the image. The one geometry of the host crop and the GPU one."""
    h, w = size
    x1, y1, x2, y2 = clip_box(expand(box, margin, -trim_y), w, h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        x1, y1, x2, y2 = clip_box(box, w, h)
    ph, pw = y2 - y1, x2 - x1
    return x1, y1, x2, y2, ph >= 2 and 0 < pw < two_line_aspect * ph


def crop(
    image: Image,
    box: Box,
    *,
    margin: float,
    trim_y: float,
    stretch: float,
    height: int,
    max_width: int,
    width: int | None = None,
    two_line_aspect: float = 0.0,
) -> FloatArray:
    """The plate as the recogniser wants it: cut from the full-resolution frame
    (`cut`); a cut narrower than ``two_line_aspect`` (width / height) is taken for
    a two-line plate and its halves are put side by side (`unfold_lines`); then
    resized to exactly ``width`` x ``height`` when ``width`` is given (a fixed-size
    recogniser), else stretched ``stretch`` times horizontally (so repeated
    characters keep a blank between them at W/8 time steps) and resized to
    ``height`` keeping that aspect (at most ``max_width``). Scaled to [-1, 1].
    Returns 3 x height x width (BGR). Training uses this same function, so serving
    and training never prepare crops differently (the torch backend samples the
    same cut on the GPU: `TorchEngine.launch_cuts`)."""
    x1, y1, x2, y2, _ = cut(image.shape[:2], box, margin=margin, trim_y=trim_y,
                            two_line_aspect=two_line_aspect)  # fmt: skip
    patch = image[y1:y2, x1:x2]
    if patch.size == 0:
        return np.zeros((3, height, width or height), np.float32)
    patch = unfold_lines(patch, two_line_aspect)
    ph, pw = patch.shape[:2]
    if width is None:
        width = int(min(max_width, max(height, round(pw * stretch * height / ph))))
    resized = cv2.resize(patch, (width, height), interpolation=cv2.INTER_CUBIC)
    out: FloatArray = np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32)
    return out / np.float32(127.5) - np.float32(1.0)


def unfold_lines(patch: Image, two_line_aspect: float) -> Image:
    """A patch whose width / height is below ``two_line_aspect`` (a two-line plate:
    motorcycles, some trailers) becomes one line: its top half, then its bottom
    half, side by side. Wider patches (and ``two_line_aspect`` 0) are returned as
    they are."""
    ph, pw = patch.shape[:2]
    if ph < 2 or pw >= two_line_aspect * ph:
        return patch
    half = ph // 2
    unfolded: Image = np.ascontiguousarray(
        np.concatenate([patch[:half], patch[half : 2 * half]], axis=1)
    )
    return unfolded


#: Recogniser inputs are padded to a multiple of this width: a runtime that
#: specialises on input shapes (OpenVINO) then sees a handful of shapes, not one
#: per crop, and its memory stays flat.
WIDTH_STEP = 96


def batch(crops: Sequence[FloatArray], fixed: bool = False) -> FloatArray:
    """Crops of one height, right-padded with zeros to the widest, rounded up to a
    multiple of WIDTH_STEP; ``fixed`` (crops of one fixed width): stacked as they are."""
    widest = max(c.shape[2] for c in crops)
    width = widest if fixed else -(-widest // WIDTH_STEP) * WIDTH_STEP
    out = np.zeros((len(crops), 3, crops[0].shape[1], width), np.float32)
    for i, c in enumerate(crops):
        out[i, :, :, : c.shape[2]] = c
    return out
