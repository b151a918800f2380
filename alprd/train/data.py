"""Training data for the plate recogniser: the data recipe, the split, augmentation.

Sources (mixing weights on the command line):

- ``real``: real plate crops of every region (`alprd.train.labels`: ``<data>/labels.csv``
  rows ``file,plate,kind`` whose kind is not ``synthetic``, Brazil;
  ``labels-us.csv``, kind ``us_<state>``; ``labels-eu.csv``
  ``file,plate,country,quality,note``, kind ``eu_<country>``, rows of quality
  ``skip`` left out, a ``two-line`` note marks a two-line plate), split into train
  and validation **by plate text** (`labels.is_validation`: a hash of the plate string, so
  a plate seen in training never appears in validation, the split is the same on
  every machine and each region's share is held out alike); a crop whose label is
  a guess (quality ``unsure``) is trained on but never scored;
- ``rendered``: the clean renders (kind ``synthetic``), training only, less any
  whose text is a validation plate;
- ``synth``: the project's plate generator (`alprd.train.synth`), when installed.

Labels are audited (`labels.AUDIT`): the given labels name one plate in several ways
(AEA9316 also as AFA9316 and ABA9316), which both teaches wrong text and puts one
plate on both sides of the split; each correction was checked by eye on the image.

Every sample, augmented or not, goes through the serving crop function
(`alprd.pipeline.ocr.crop`): a plate image is put on a canvas, a jittered box (like
a detector's: up to about twice the plate's height) is cut from it exactly as the
pipeline cuts a detected plate from a frame. A two-line plate is shown unfolded
(top line, then bottom line), a one-line plate as it is; a share of samples is shown
the other way with the target `WRONG_VIEW` (the recogniser's last class): serving
reads a crop in the view its aspect suggests and, when the recogniser answers that,
reads it again the other way (`alprd.pipeline.ocr.wrong_view`). Only numpy and
OpenCV here.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from alprd.pipeline.ocr import crop
from alprd.pipeline.source import read_image
from alprd.train.labels import clean, corrections, read_labels, region_of, split_rows

FloatArray = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]

SOURCES = ("real", "rendered", "synth")
#: The target of a sample shown in the wrong view (a one-line plate unfolded, a
#: two-line plate as one line): `alprd.engines.platenet.encode` maps it to the
#: recogniser's last class.
WRONG_VIEW = " "


@dataclass(frozen=True)
class CropSpec:
    """How a plate becomes the recogniser's input (mirrors models.ocr)."""

    height: int = 32
    width: int = 128
    two_line_aspect: float = 1.3

    def view(self, two_lines: bool) -> CropSpec:
        """This spec with the view forced: every crop unfolded as a two-line plate,
        or none."""
        return replace(self, two_line_aspect=float("inf") if two_lines else 0.0)

    def __call__(self, image: Image, box: tuple[float, float, float, float]) -> FloatArray:
        return crop(
            image,
            box,
            margin=0.0,
            trim_y=0.0,
            stretch=1.0,
            height=self.height,
            max_width=self.width,
            width=self.width,
            two_line_aspect=self.two_line_aspect,
        )


@dataclass(frozen=True)
class Item:
    image: Image  # the plate, BGR, cut tight
    text: str  # A-Z0-9 only
    kind: str  # camera_CC, us_ca, eu_d, synthetic, synth:<region>, ...
    lines: int = 1  # 2: a two-line plate, read top line first


@dataclass
class Recipe:
    """The loaded data: real crops split by plate text, and the clean renders."""

    train: list[Item]
    validation: list[Item]
    rendered: list[Item]
    audited: int = 0  # labels the audit corrected, left undecided or left out

    def counts(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "real_train": len(self.train),
            "real_train_plates": len({i.text for i in self.train}),
            "real_validation": len(self.validation),
            "real_validation_plates": len({i.text for i in self.validation}),
            "rendered": len(self.rendered),
        }
        for side, items in (("train", self.train), ("validation", self.validation)):
            regions = Counter(region_of(i.kind) for i in items)
            out[f"real_{side}_per_region"] = dict(sorted(regions.items()))
        out["two_line_train"] = sum(i.lines == 2 for i in self.train)
        return out


def load(
    data: Path, val_fraction: float = 0.2, limit: int | None = None, audited: bool = True
) -> Recipe:
    """Read ``<data>/labels.csv`` (audited: `read_labels`) and its images. ``limit``
    caps each list (smoke runs)."""
    rows = read_labels(data, audited)
    fixes = corrections(data.name) if audited else {}
    fixed = sum(
        fixes.get(r.path.relative_to(data).as_posix(), ("",))[0] == r.plate
        for r in read_labels(data, False)
    )
    train, val, rendered = (
        [Item(read_image(r.path), r.plate, r.kind, r.lines) for r in part[:limit]]
        for part in split_rows(rows, val_fraction)
    )
    return Recipe(train, val, rendered, fixed)


def synth_generator(seed: int) -> Any | None:
    """The project's plate generator (`alprd.train.synth.Generator(seed)`, whose
    ``sample(i)`` gives an object with ``image``, ``text``, ``region``, ``lines``), or
    None when that module is not installed."""
    try:
        module = importlib.import_module("alprd.train.synth")
    except ImportError:
        return None
    return module.Generator(seed)


# --------------------------------------------------------------------------- augmentation


def detector_view(image: Image) -> tuple[Image, tuple[float, float, float, float]]:
    """A crop on a replicated-border canvas and a centred box 1.4x its height and
    1.1x its width: about what the plate detector gives (evaluation)."""
    h, w = image.shape[:2]
    py, px = h, w // 2
    canvas: Image = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_REPLICATE).astype(
        np.uint8, copy=False
    )
    cx, cy, bw, bh = px + w / 2, py + h / 2, 1.1 * w, 1.4 * h
    return canvas, (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)


def augment(
    image: Image, rng: np.random.Generator, spec: CropSpec, mild: bool = False
) -> FloatArray:
    """A plate image as the pipeline would see it: on a canvas (its own border
    replicated, or a textured colour), tilted and sheared a
    little, degraded (resolution, blur, light, colour, noise, JPEG), then cut with a
    box jittered like a detector's and prepared by the serving crop. ``mild``: light
    changes only and a box close to the plate (easy samples, which get CTC training
    past its all-blank plateau sooner)."""
    h, w = image.shape[:2]
    py, px = int(h * 0.8) + 2, int(w * 0.3) + 2
    if rng.random() < 0.5:
        canvas = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_REPLICATE)
    else:  # a car-body colour with some texture
        size = (h + 2 * py, w + 2 * px, 3)
        colour = rng.integers(0, 256, 3).astype(np.float32)
        coarse = rng.normal(0, rng.uniform(2, 25), (size[0] // 8 + 1, size[1] // 8 + 1))
        texture = cv2.resize(coarse.astype(np.float32), (size[1], size[0]))[..., None]
        canvas = np.clip(colour + texture, 0, 255).astype(np.uint8)
        canvas[py : py + h, px : px + w] = image
    ch, cw = canvas.shape[:2]
    cx, cy = px + w / 2, py + h / 2
    # small rotation and shear about the plate centre
    angle = float(np.clip(rng.normal(0, 2.5), -8, 8)) * (0.3 if mild else 1.0)
    shear = float(rng.uniform(-0.15, 0.15)) if rng.random() < 0.5 and not mild else 0.0
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[0, 1] += shear
    m[0, 2] -= shear * cy
    canvas = cv2.warpAffine(
        canvas, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    # camera degradations
    if mild:
        pass
    elif rng.random() < 0.35:
        f = float(rng.uniform(0.3, 0.8))
        small = cv2.resize(
            canvas, (max(4, int(cw * f)), max(4, int(ch * f))), interpolation=cv2.INTER_AREA
        )
        canvas = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_LINEAR)
    if mild:
        pass
    elif rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        canvas = cv2.GaussianBlur(canvas, (k, k), 0)
    elif rng.random() < 0.15:
        k = int(rng.integers(3, 8))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        canvas = cv2.filter2D(canvas, -1, kernel)
    # the box a detector might give: taller and a little wider than the plate, off
    # centre (the plate detector's boxes on plates-br: 1.15-2.0x the plate's height,
    # median 1.4; 1.03-1.3x its width)
    if mild:
        hs, ws = float(rng.uniform(0.95, 1.15)), float(rng.uniform(0.98, 1.08))
    elif rng.random() < 0.7:
        hs, ws = float(rng.uniform(1.0, 2.0)), float(rng.uniform(0.97, 1.28))
    else:
        hs, ws = float(rng.uniform(0.9, 1.2)), float(rng.uniform(0.97, 1.28))
    bx = cx + float(rng.normal(0, 0.03)) * w
    by = cy + float(rng.normal(0, 0.06)) * h
    box = (bx - ws * w / 2, by - hs * h / 2, bx + ws * w / 2, by + hs * h / 2)
    # light, colour, noise and JPEG act on each pixel alone: only the part the box
    # cuts (and a few pixels round it for the crop's interpolation) is worked on
    x0, y0 = max(0, int(box[0]) - 4), max(0, int(box[1]) - 4)
    x1, y1 = min(cw, int(box[2]) + 5), min(ch, int(box[3]) + 5)
    work = canvas[y0:y1, x0:x1].astype(np.float32)
    if rng.random() < 0.2:
        work = work.mean(axis=2, keepdims=True).repeat(3, axis=2)
    gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.55, 1.4)  # colour cast, exposure
    work *= gain.astype(np.float32)
    work += np.float32(rng.uniform(-45, 45))
    if rng.random() < 0.5:
        work += rng.standard_normal(work.shape, dtype=np.float32) * np.float32(rng.uniform(1, 12))
    part = np.clip(work, 0, 255, out=work).astype(np.uint8)
    if rng.random() < 0.3 and not mild:
        q = int(rng.integers(20, 80))
        ok, buf = cv2.imencode(".jpg", part, [cv2.IMWRITE_JPEG_QUALITY, q])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            part = decoded.astype(np.uint8, copy=False)
    box = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    return spec(part, box)


class Mixer:
    """Draws training samples from the sources by weight (one per worker process,
    seeded per worker); a ``mild`` share of them lightly augmented. For the first
    ``curriculum`` share of training (``progress()`` in [0, 1]) the mix moves from
    lightly augmented clean renders to the configured one: CTC gets past its
    all-blank plateau far sooner on easy samples. Generated
    plates are kept in a pool and each is reused about ``synth_reuse`` times with
    fresh augmentation, so the generator is not the bottleneck of a GPU run."""

    def __init__(
        self,
        real: Sequence[Item],
        rendered: Sequence[Item],
        weights: dict[str, float],
        spec: CropSpec,
        seed: int,
        *,
        generator: Any | None = None,
        synth_offset: int = 0,
        synth_stride: int = 1,
        synth_reuse: int = 4,
        synth_pool: int = 2048,
        mild: float = 0.3,
        progress: Callable[[], float] | None = None,
        curriculum: float = 0.0,
        wrong_view: float = 0.0,
    ) -> None:
        have = {"real": bool(real), "rendered": bool(rendered), "synth": generator is not None}
        self.names = [s for s in SOURCES if have[s] and weights.get(s, 0.0) > 0]
        if not self.names:
            raise ValueError("no training data: every source with a weight > 0 is empty")
        p = np.array([weights[s] for s in self.names], np.float64)
        self.p = p / p.sum()
        # the easy start: clean renders (else whatever there is), lightly augmented
        easy = np.array([s == "rendered" for s in self.names], np.float64)
        self.p_easy = easy / easy.sum() if easy.sum() else self.p
        self.progress = progress or (lambda: 1.0)
        self.curriculum = curriculum
        self.real, self.rendered, self.spec = real, rendered, spec
        # real crops are drawn region by region, each region alike (the US crops are
        # fewer than the European ones but count as much)
        by_region: dict[str, list[Item]] = {}
        for item in real:
            by_region.setdefault(region_of(item.kind), []).append(item)
        self.real_regions = [by_region[r] for r in sorted(by_region)]
        self.rng = np.random.default_rng(seed)
        self.generator = generator
        self.next_synth = synth_offset
        self.stride = synth_stride
        self.reuse = max(1, synth_reuse)
        self.pool: list[Item] = []
        self.pool_size = synth_pool
        self.mild = mild
        self.wrong_view = wrong_view

    def _synth(self) -> Item:
        fresh = len(self.pool) < self.pool_size or self.rng.random() < 1.0 / self.reuse
        if not fresh:
            return self.pool[int(self.rng.integers(len(self.pool)))]
        assert self.generator is not None
        s = self.generator.sample(self.next_synth)
        self.next_synth += self.stride
        item = Item(
            np.ascontiguousarray(s.image, dtype=np.uint8), clean(s.text), f"synth:{s.region}",
            s.lines,
        )  # fmt: skip
        if len(self.pool) < self.pool_size:
            self.pool.append(item)
        else:
            self.pool[int(self.rng.integers(self.pool_size))] = item
        return item

    def __call__(self) -> tuple[FloatArray, str, str]:
        """(input 3 x H x W, text, source name): a two-line plate unfolded, a
        one-line plate as it is; a ``wrong_view`` share the other way round, with the
        target `WRONG_VIEW`."""
        t = min(1.0, self.progress() / self.curriculum) if self.curriculum > 0 else 1.0
        p = (1 - t) * self.p_easy + t * self.p
        source = self.names[int(self.rng.choice(len(self.names), p=p / p.sum()))]
        if source == "synth":
            item = self._synth()
        else:
            items = self.rendered
            if source == "real":
                items = self.real_regions[int(self.rng.integers(len(self.real_regions)))]
            item = items[int(self.rng.integers(len(items)))]
        mild = self.rng.random() < (1 - t) + t * self.mild
        wrong = self.rng.random() < self.wrong_view * t
        two = (item.lines == 2) != wrong
        text = WRONG_VIEW if wrong else item.text
        return augment(item.image, self.rng, self.spec.view(two), mild), text, source
