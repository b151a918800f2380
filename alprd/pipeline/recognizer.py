"""The per-frame stages with their engines: vehicles -> plates -> text.

Stateless across frames (tracking and voting live in `stream`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from alprd import config as cfgmod
from alprd import ops
from alprd.engines.base import (
    Cut,
    DeviceFrames,
    EngineError,
    Pending,
    Region,
    Role,
    Steps,
    drive,
    is_device,
)
from alprd.engines.serving import LoadedEngine, load_engine, roles_of
from alprd.log import get_logger
from alprd.pipeline import geometry, ocr
from alprd.pipeline.detect import Detector, split
from alprd.pipeline.types import Box, Plate, Text, Vehicle

log = get_logger("alprd.pipeline")

T = TypeVar("T")


@dataclass(frozen=True)
class FrameResult:
    vehicles: list[Vehicle]
    plates: list[tuple[Plate, Text]]


class StageTimes:
    """Seconds spent per stage, per call (bounded: the last `keep` calls)."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self.samples: dict[str, list[float]] = {"vehicle": [], "plate": [], "ocr": []}
        self.count: dict[str, int] = {"vehicle": 0, "plate": 0, "ocr": 0}  # ever added

    def add(self, stage: str, seconds: float) -> None:
        self.count[stage] += 1
        s = self.samples[stage]
        s.append(seconds)
        if len(s) > self.keep:
            del s[: len(s) - self.keep]


class Recognizer:
    def __init__(self, config: cfgmod.Config, engines: dict[Role, LoadedEngine]) -> None:
        self.engines = dict(engines)
        self.generations: dict[Role, int] = dict.fromkeys(engines, 1)
        self.times = StageTimes()
        self.configure(config)

    @classmethod
    def load(cls, config: cfgmod.Config) -> Recognizer:
        """Ensure (build if stale) and load the engines the config names."""
        return cls(config, {role: load_engine(config, role) for role in roles_of(config)})

    def configure(self, config: cfgmod.Config) -> None:
        """(Re)build the stages around the loaded engines: thresholds, classes, crop
        settings. Cheap; the engines are not touched."""
        m = config.models
        self.vehicle: Detector | None = None
        self.vehicle_names: list[str] = []
        if "vehicle" in self.engines and m.vehicle.enabled:
            v = self.engines["vehicle"]
            missing = [c for c in m.vehicle.classes if c not in v.names]
            if missing:
                raise EngineError(f"models.vehicle.classes: the model has no {', '.join(missing)}")
            self.vehicle_names = list(v.names)
            self.vehicle = Detector(
                v.engine, size=m.vehicle.input_hw, batch=v.batch, conf=m.vehicle.confidence,
                iou=m.vehicle.iou, max_det=m.vehicle.max_detections,
                keep=[v.names.index(c) for c in m.vehicle.classes],
            )  # fmt: skip
        p = self.engines["plate"]
        self.plate = Detector(
            p.engine, size=m.plate.input_hw, batch=p.batch, conf=m.plate.confidence,
            iou=m.plate.iou, max_det=m.plate.max_detections,
        )  # fmt: skip
        o = self.engines["ocr"]
        self.reader, self.reader_batch = o.engine, o.batch
        dictionary = m.ocr.dictionary.read_text(encoding="utf-8").splitlines()
        self.alphabet = ocr.Alphabet(dictionary, m.ocr.charset)
        self.search_margin = m.plate.search_margin
        self.fallback = m.plate.full_frame_fallback
        self.ocr = m.ocr
        # alprd's own recogniser (a fixed input width) answers a crop in the wrong
        # view with its last class; other recognisers' last class is a real space
        self.view_check = (
            m.ocr.view_check if m.ocr.view_check is not None else m.ocr.input_width is not None
        )
        self.config = config

    def swap(
        self, loaded: LoadedEngine, config: cfgmod.Config | None = None
    ) -> LoadedEngine | None:
        """Serve `loaded` from the next frame on (with `config`, when the role's
        settings come with the model: a routed recogniser's dictionary); returns the
        engine it replaces (the caller closes it). Call between frames, from the
        inference thread."""
        old = self.engines.get(loaded.role)
        self.engines[loaded.role] = loaded
        self.generations[loaded.role] = self.generations.get(loaded.role, 0) + 1
        self.configure(config or self.config)
        return old

    def frame_allocator(self) -> Callable[[tuple[int, ...]], ops.Image] | None:
        """What cameras should decode frames into for the first stage's engine
        (page-locked buffers for the torch backend on a GPU: uploaded without a
        copy); None for plain arrays. The function stays valid across swaps."""
        engine = (self.vehicle or self.plate).engine
        return engine.allocate_frame if is_device(engine) else None

    def on_gpu(self) -> bool:
        """The first stage's engine works on frames on a GPU (cameras may decode
        there: `alprd.pipeline.nvdec`)."""
        engine = (self.vehicle or self.plate).engine
        return is_device(engine) and engine.gpu

    def summary(self) -> str:
        """`vehicle=openvino plate=openvino#2 ...`: backend per role, and the engine
        generation where a swap made it more than 1."""
        return " ".join(
            f"{r}={e.backend}" + (f"#{g}" if (g := self.generations.get(r, 1)) > 1 else "")
            for r, e in self.engines.items()
        )

    # ----------------------------------------------------------------- stages

    def vehicles(self, image: ops.Image) -> list[Vehicle]:
        return self.vehicles_many([image])[0]

    def vehicles_many(self, images: Sequence[ops.AnyImage], frames: DeviceFrames | None = None
                      ) -> list[list[Vehicle]]:  # fmt: skip
        """Vehicles in each image (one batched detector call); `frames`: the images
        already on the device (`upload`)."""
        return drive(self._vehicles(images, frames))

    def _vehicles(
        self, images: Sequence[ops.AnyImage], frames: DeviceFrames | None
    ) -> Steps[list[list[Vehicle]]]:
        if self.vehicle is None:
            return [[] for _ in images]
        source: Sequence[ops.Image] | DeviceFrames = (
            frames if frames is not None and self.vehicle.on_device else hosted(images)
        )
        pending = self.vehicle.launch(source)
        yield
        return [
            [
                Vehicle(tuple(map(float, b)), float(c), self.vehicle_names[int(k)])  # type: ignore[arg-type]
                for b, c, k in zip(dets.xyxy, dets.confidence, dets.class_id, strict=True)
            ]
            for dets in pending.result()
        ]

    def plates(
        self, image: ops.Image, vehicles: Sequence[Vehicle], *, fallback: bool = True
    ) -> list[Plate]:
        """Plates on the vehicle crops (batched); on the full frame when there is no
        vehicle model, or when the vehicles gave no plate (and the fallback is on)."""
        return self.plates_many([image], [vehicles], fallback=[fallback])[0]

    def plates_many(
        self,
        images: Sequence[ops.AnyImage],
        vehicles: Sequence[Sequence[Vehicle]],
        *,
        fallback: Sequence[bool],
        frames: DeviceFrames | None = None,
    ) -> list[list[Plate]]:
        """`plates` for several images: every vehicle crop of every image in one
        batched detector call, then the full frames that need the fallback in one.
        `frames`: the images already on the device (`upload`), which the plate
        detector then samples its crops from."""
        return drive(self._plates(images, vehicles, fallback, frames))

    def _plates(
        self,
        images: Sequence[ops.AnyImage],
        vehicles: Sequence[Sequence[Vehicle]],
        fallback: Sequence[bool],
        frames: DeviceFrames | None,
    ) -> Steps[list[list[Plate]]]:
        regions: list[Region] = []
        owners: list[Vehicle | None] = []  # None: a whole frame
        whole_frames = self.vehicle is None or self.fallback
        for i, (image, vs) in enumerate(zip(images, vehicles, strict=True)):
            h, w = image.shape[:2]
            for v in vs:
                x1, y1, x2, y2 = geometry.clip_box(
                    geometry.expand(v.box, self.search_margin, self.search_margin), w, h
                )
                if x2 - x1 < 8 or y2 - y1 < 8:
                    continue
                regions.append((i, x1, y1, x2, y2))
                owners.append(v)
            if not vs and fallback[i] and whole_frames:  # no vehicle: the whole frame,
                regions.append((i, 0, 0, w, h))  # searched in the same batch
                owners.append(None)
        device = frames if frames is not None and self.plate.on_device else None
        source = device if device is not None else hosted(images)
        found: list[list[Plate]] = [[] for _ in images]
        pending = self.plate.launch_regions(source, regions)
        if regions:
            yield
        for dets, (i, ox, oy, _, _), owner in zip(pending.result(), regions, owners, strict=True):
            for b, c in zip(dets.xyxy, dets.confidence, strict=True):
                box = (float(b[0] + ox), float(b[1] + oy), float(b[2] + ox), float(b[3] + oy))
                found[i].append(Plate(box, float(c), owner or _owner(box, vehicles[i])))
        # vehicles searched, no plate on any: the whole frame too
        full = [
            i
            for i in range(len(images))
            if vehicles[i] and not found[i] and fallback[i] and whole_frames
        ]
        whole = device.take(full) if device is not None else [ops.host(images[i]) for i in full]
        searched = self.plate.launch(whole) if full else Pending.done([])
        if full:
            yield
        for i, dets in zip(full, searched.result(), strict=True):
            for b, c in zip(dets.xyxy, dets.confidence, strict=True):
                box = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
                found[i].append(Plate(box, float(c), _owner(box, vehicles[i])))
        return [_dedupe(f) for f in found]

    def upload(self, images: Sequence[ops.AnyImage]) -> DeviceFrames | None:
        """The images on the device once for the detector stages of a batch, when
        the first stage's engine works there (`DeviceEngine`); else None."""
        engine = (self.vehicle or self.plate).engine
        if not is_device(engine) or not images:
            return None
        return engine.upload(list(images))

    def read(self, image: ops.Image, plates: Sequence[Plate]) -> list[Text]:
        """OCR on each plate, cut from the full-resolution frame."""
        return self.read_many([image], [plates])[0]

    def read_many(
        self,
        images: Sequence[ops.AnyImage],
        plates: Sequence[Sequence[Plate]],
        frames: DeviceFrames | None = None,
    ) -> list[list[Text]]:
        """`read` for several images: all their plates in batches of the engine's
        size. `frames`: the images already on the device (`upload`); a fixed-size
        recogniser there samples its crops from them (`DeviceEngine.launch_cuts`)."""
        return drive(self._read(images, plates, frames))

    def _read(self, images: Sequence[ops.AnyImage], plates: Sequence[Sequence[Plate]],
              frames: DeviceFrames | None) -> Steps[list[list[Text]]]:  # fmt: skip
        """Each plate read in the view its aspect suggests (`ocr.cut`: a cut narrower
        than ``two_line_aspect`` is unfolded as a two-line plate); with
        ``view_check``, the plates the recogniser says are in the wrong view
        (`ocr.wrong_view`) are read again the other way, in one more batch."""
        o = self.ocr
        cut = {"margin": o.crop_margin, "trim_y": o.crop_trim, "two_line_aspect": o.two_line_aspect}
        items = [
            (i, p.box, ocr.cut(image.shape[:2], p.box, **cut))
            for i, (image, ps) in enumerate(zip(images, plates, strict=True))
            for p in ps
        ]
        texts, wrong = yield from self._recognise(images, items, frames)
        again = [k for k, w in enumerate(wrong) if w] if self.view_check else []
        if again:
            flipped = [(items[k][0], items[k][1], (*items[k][2][:4], not items[k][2][4]))
                       for k in again]  # fmt: skip
            redone, _ = yield from self._recognise(images, flipped, frames)
            for k, text in zip(again, redone, strict=True):
                texts[k] = text
        per_image, at = [], 0
        for ps in plates:
            per_image.append(texts[at : at + len(ps)])
            at += len(ps)
        return per_image

    def _recognise(
        self,
        images: Sequence[ops.AnyImage],
        items: Sequence[tuple[int, Box, Cut]],
        frames: DeviceFrames | None,
    ) -> Steps[tuple[list[Text], list[bool]]]:
        """The recogniser on plates (image index, box, `Cut`: where and in which
        view), in batches of the engine's size: each plate's text and whether the
        recogniser says its view is the wrong one. `frames`: the images already on
        the device (`upload`); a fixed-size recogniser there samples its crops from
        them (`DeviceEngine.launch_cuts`)."""
        o, reader = self.ocr, self.reader
        outputs: list[npt.NDArray[np.float32]]
        if frames is not None and o.input_width is not None and is_device(reader):
            cuts = split([(i, c) for i, _, c in items], self.reader_batch, reader.any_batch)
            sizes = [n for _, n in cuts]
            launched = [reader.launch_cuts(frames, chunk, o.input_height, o.input_width)
                        for chunk, _ in cuts]  # fmt: skip
            if launched:
                yield
            outputs = [pending.result() for pending in launched]
        else:
            crops = [
                ocr.crop(
                    ops.host(images[i]),
                    box,
                    margin=o.crop_margin,
                    trim_y=o.crop_trim,
                    stretch=o.stretch,
                    height=o.input_height,
                    max_width=o.max_width,
                    width=o.input_width,
                    two_line_aspect=float("inf") if c[4] else 0.0,
                )
                for i, box, c in items
            ]
            chunks = split(crops, self.reader_batch, reader.any_batch)
            sizes = [n for _, n in chunks]
            batches = [ocr.batch(chunk, fixed=o.input_width is not None) for chunk, _ in chunks]
            outputs = [out[0] for out in reader.run_many(batches)]
        texts: list[Text] = []
        wrong: list[bool] = []
        for out, n in zip(outputs, sizes, strict=True):
            texts += self.alphabet.decode_many(self.alphabet.reduce(out[:n]))
            wrong += ocr.wrong_view(out[:n]).tolist()
        return texts, wrong

    def __call__(
        self,
        image: ops.Image,
        zone: Sequence[tuple[float, float]] | None = None,
        select: Callable[[list[Vehicle]], list[Vehicle]] | None = None,
    ) -> FrameResult:
        """All stages on one frame. `select(vehicles)` may narrow which vehicles
        are searched for plates (per-track skipping); the full-frame fallback then
        runs only if none was left out."""
        return self.many([image], [zone], [select])[0]

    def many(
        self,
        images: Sequence[ops.AnyImage],
        zones: Sequence[Sequence[tuple[float, float]] | None] | None = None,
        selects: Sequence[Callable[[list[Vehicle]], list[Vehicle]] | None] | None = None,
    ) -> list[FrameResult]:
        """All stages on several frames (several cameras), each stage batched
        across them: what a GPU needs to be busy."""
        return drive(self.steps(images, zones, selects))

    def steps(
        self,
        images: Sequence[ops.AnyImage],
        zones: Sequence[Sequence[tuple[float, float]] | None] | None = None,
        selects: Sequence[Callable[[list[Vehicle]], list[Vehicle]] | None] | None = None,
    ) -> Steps[list[FrameResult]]:
        """`many`, pausing where it waits for the device (`Lanes` runs another
        batch's host work there)."""
        zones = zones or [None] * len(images)
        selects = selects or [None] * len(images)
        t0 = time.perf_counter()
        frames = self.upload(images)
        vehicles = yield from self._vehicles(images, frames)
        t1 = time.perf_counter()
        searched = [
            vs if sel is None else sel(vs) for vs, sel in zip(vehicles, selects, strict=True)
        ]
        plates = yield from self._plates(
            images, searched,
            [len(s) == len(v) for s, v in zip(searched, vehicles, strict=True)], frames,
        )  # fmt: skip
        for i, zone in enumerate(zones):
            if zone:
                plates[i] = [p for p in plates[i] if geometry.inside(geometry.centre(p.box), zone)]
        t2 = time.perf_counter()
        texts = yield from self._read(images, plates, frames)
        t3 = time.perf_counter()
        self.times.add("vehicle", t1 - t0)
        self.times.add("plate", t2 - t1)
        self.times.add("ocr", t3 - t2)
        return [
            FrameResult(vs, list(zip(ps, ts, strict=True)))
            for vs, ps, ts in zip(vehicles, plates, texts, strict=True)
        ]

    def lanes(self) -> int:
        """How many batches to keep in flight (`engines.lanes`; "auto": 2 when the
        first stage's engine works on a GPU, else 1)."""
        configured = self.config.engines.lanes
        if configured != "auto":
            return configured
        return 2 if self.on_gpu() else 1

    def lane(self) -> contextlib.AbstractContextManager[object]:
        """A context for one lane of `Lanes`: its device work on a stream of its
        own (the first engine's `stream`), or a no-op on host engines."""
        engine = (self.vehicle or self.plate).engine
        return engine.stream() if is_device(engine) else contextlib.nullcontext()

    def close(self) -> None:
        for engine in (
            self.vehicle.engine if self.vehicle else None,
            self.plate.engine,
            self.reader,
        ):
            if engine is not None:
                engine.close()


def hosted(images: Sequence[ops.AnyImage]) -> list[ops.Image]:
    """`images` on the host, for an engine that works there (a frame decoded on a
    GPU is downloaded once, however many stages ask)."""
    return [ops.host(image) for image in images]


def _owner(box: tuple[float, float, float, float], vehicles: Sequence[Vehicle]) -> Vehicle | None:
    """The smallest vehicle whose box holds the plate's centre."""
    cx, cy = geometry.centre(box)
    holding = [v for v in vehicles if v.box[0] <= cx <= v.box[2] and v.box[1] <= cy <= v.box[3]]
    return min(holding, key=lambda v: (v.box[2] - v.box[0]) * (v.box[3] - v.box[1]), default=None)


def _dedupe(plates: list[Plate], iou: float = 0.5) -> list[Plate]:
    """The same plate found in two overlapping vehicle crops counts once."""
    kept: list[Plate] = []
    for p in sorted(plates, key=lambda p: -p.confidence):
        if all(geometry.iou(p.box, k.box) < iou for k in kept):
            kept.append(p)
    return kept
