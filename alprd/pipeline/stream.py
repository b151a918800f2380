"""One camera's stateful pipeline: per-frame reads -> tracks -> one event per pass."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from alprd import config as cfgmod
from alprd import ops
from alprd.engines.base import Steps, drive
from alprd.ops import AnyImage, Image
from alprd.pipeline import geometry
from alprd.pipeline.direction import direction
from alprd.pipeline.motion import MotionGate, thumbnails
from alprd.pipeline.recognizer import FrameResult, Recognizer
from alprd.pipeline.rules import PlateRules
from alprd.pipeline.track import Track, Tracker
from alprd.pipeline.types import (
    Box,
    Frame,
    PassCall,
    PassKey,
    Plate,
    PlateEvent,
    PlateRead,
    Text,
    Vehicle,
)
from alprd.pipeline.vote import Voter


def rules_for(config: cfgmod.Config, regions: Sequence[str] | None = None) -> PlateRules:
    p = config.plates
    return PlateRules(
        formats=p.formats,
        regions=p.regions if regions is None else regions,
        require_format=p.require_format,
        format_margin=p.format_margin,
        min_length=p.min_length,
        min_char_confidence=config.models.ocr.min_char_confidence,
        replace=p.replace,
        known=p.known,
        known_max_distance=p.known_max_distance,
    )


@dataclass(frozen=True)
class Snapshot:
    """What a pass keeps of its most confident read's frame (only when asked for):
    the region that holds the read's vehicle and plate with its surround (what the
    snapshot files show), copied out so that the frame itself is freed at once (a
    parked car's pass may stay open for hours), or the whole frame (`alprd detect
    --save` draws on it). `origin`: the image's top-left corner in the frame."""

    image: Image
    read: PlateRead
    origin: tuple[int, int] = (0, 0)

    @classmethod
    def around(cls, frame: AnyImage, read: PlateRead) -> Snapshot:
        """The region of `frame` that the read's snapshot files need, copied."""
        plate = read.plate
        region = geometry.expand(plate.box, *geometry.PLATE_SURROUND)
        if plate.vehicle is not None:
            region = geometry.union(region, plate.vehicle.box)
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = geometry.clip_box(region, w, h)
        return cls(ops.region(frame, x1, y1, x2, y2), read, (x1, y1))

    def boxes(self) -> tuple[Box, Box | None]:
        """The read's plate and vehicle boxes in `image`'s pixels."""
        x, y = self.origin
        plate = self.read.plate
        vehicle = plate.vehicle.box if plate.vehicle is not None else None
        return geometry.shift(plate.box, -x, -y), (
            geometry.shift(vehicle, -x, -y) if vehicle is not None else None
        )


class CameraPipeline:
    def __init__(
        self,
        camera: str,
        recognizer: Recognizer,
        config: cfgmod.Config,
        *,
        zone: Sequence[tuple[float, float]] | None = None,
        regions: Sequence[str] | None = None,
        keep_snapshots: bool = False,
        snapshot_frames: bool = False,
        early: bool = True,
        motion: bool | None = None,
        arriving: str = "",
        gate: bool = False,
    ) -> None:
        """`keep_snapshots`: each pass keeps its most confident read's vehicle and
        plate region (`Snapshot`), the whole frame with `snapshot_frames`.
        `gate`: a gate camera (``role = "gate"``): its passes are called as soon
        as their plate is read consistently enough (``[gate]``, `take_calls`), their
        events go out when they end."""
        self.camera, self.recognizer, self.zone = camera, recognizer, zone
        self.rules = rules_for(config, regions)
        t, v, g = config.tracking, config.voting, config.gate
        self.vehicles = Tracker(
            iou_min=t.iou_min, max_shift=t.max_shift, max_age_s=t.max_age_s,
            min_misses=t.min_misses,
        )  # fmt: skip
        self.orphans = Tracker(
            iou_min=t.iou_min, max_shift=t.max_shift, max_age_s=t.max_age_s,
            min_misses=t.min_misses,
        )  # fmt: skip
        self.voter = Voter(
            camera,
            min_agreeing=v.min_agreeing if early and not gate else 0,
            min_confidence=v.min_confidence,
            dedupe_window_s=v.dedupe_window_s,
            dedupe_max_distance=v.dedupe_max_distance,
            max_reads=v.max_reads,
            known=self.rules.known_match,
            format_of=self.rules.format_of,
            travel=partial(
                direction,
                arriving=arriving,
                min_shift=t.direction_min_shift,
                min_growth=t.direction_min_growth,
            ),
            decide_after=g.min_reads if gate else 0,
            decide_confidence=g.min_confidence,
            decide_when_heading=g.arriving_only,
        )
        self.keep_snapshots, self.snapshot_frames = keep_snapshots, snapshot_frames
        self.recheck_every = t.recheck_every
        self.decided_after = t.decided_after
        self.skipped = 0  # vehicle searches saved by per-track skipping
        m = config.motion
        self.motion = (
            MotionGate(m.pixel_threshold, m.min_area, m.max_skip_s)
            if (m.enabled if motion is None else motion)
            else None
        )
        self.gated = 0  # frames not searched: nothing moved
        self.snapshots: dict[PassKey, Snapshot] = {}  # by open pass
        self._event_snapshots: dict[int, Snapshot] = {}  # by emitted event, until taken
        self.frames = 0
        self.begun = 0  # frames handed to `Batch.begin` (ahead of `frames` while in flight)
        self.reads = 0

    def process(self, frame: Frame) -> list[PlateEvent]:
        """Run one frame; returns the events it completes. A frame in which nothing
        moved since the last searched one is skipped (motion gating). Vehicles are tracked
        before the plate search, so a pass whose plate is decided (its reads agree
        `decided_after` times) is not searched again but every `recheck_every`-th
        frame."""
        return process_many(self.recognizer, [(self, frame)])[0]

    def _gated(self, frame: Frame, thumb: np.ndarray | None = None) -> bool:
        """True (and the frame counted) when motion gating skips it (`thumb`: its
        motion thumbnail, when made for the whole batch)."""
        if self.motion is None or not self.motion.still(frame.image, frame.time, thumb):
            return False
        self.frames += 1
        self.gated += 1
        self.vehicles.hold(frame.time)  # what was there is still there
        self.orphans.hold(frame.time)
        return True

    def _selector(
        self, frame: Frame, tracked: list[tuple[list[int], list[Track]]]
    ) -> Callable[[list[Vehicle]], list[Vehicle]]:
        """Per-track skipping: tracks this frame's vehicles (into `tracked`) and
        keeps those whose plate is not decided yet (all of them on recheck frames)."""

        index = self.begun - 1  # this frame's place in the stream (whatever is in flight)

        def select(vehicles: list[Vehicle]) -> list[Vehicle]:
            ids, ended = self.vehicles.update([v.box for v in vehicles], frame.time)
            tracked.append((ids, ended))
            if not self.recheck_every or index % self.recheck_every == 0:
                return vehicles
            keep = [
                v
                for v, tid in zip(vehicles, ids, strict=True)
                if not self._decided(PassKey("vehicle", tid))
            ]
            self.skipped += len(vehicles) - len(keep)
            return keep

        return select

    def _decided(self, key: PassKey) -> bool:
        """Whether pass `key` needs no more reads (a gate's pass not called yet
        does: its direction may still have to show)."""
        if self.voter.emitted(key):
            return True
        return self.voter.agreeing(key) >= self.decided_after and not self.voter.pending(key)

    def take_calls(self) -> list[PassCall]:
        """The passes called (gate cameras) since the last time asked."""
        return self.voter.take_calls()

    def feed(
        self,
        frame: Frame,
        result: FrameResult,
        tracked: tuple[list[int], list[Track]] | None = None,
    ) -> list[PlateEvent]:
        """Track, rule and vote one frame's result (`tracked`: vehicle track ids
        and ended tracks, when the caller already tracked this frame's vehicles)."""
        self.frames += 1
        if tracked is None:
            tracked = self.vehicles.update([v.box for v in result.vehicles], frame.time)
        v_ids, v_ended = tracked
        track_of = {id(v): tid for v, tid in zip(result.vehicles, v_ids, strict=True)}
        orphans = [
            p for p, _ in result.plates if p.vehicle is None or id(p.vehicle) not in track_of
        ]
        o_ids, o_ended = self.orphans.update([p.box for p in orphans], frame.time)
        orphan_of = {id(p): tid for p, tid in zip(orphans, o_ids, strict=True)}
        events: list[PlateEvent] = []
        for key in _ended(v_ended, o_ended):
            self._settle(key, self.voter.end(key), events, ended=True)
        for plate, text in result.plates:
            key = (
                PassKey("vehicle", track_of[id(plate.vehicle)])
                if plate.vehicle is not None and id(plate.vehicle) in track_of
                else PassKey("plate", orphan_of[id(plate)])
            )
            self._settle(key, self._read(key, frame, plate, text), events, ended=False)
        return events

    def _settle(
        self, key: PassKey, event: PlateEvent | None, out: list[PlateEvent], *, ended: bool
    ) -> None:
        """Record `event` (if any) and hand its pass's snapshot over to it; a pass
        that ended without an event lets its snapshot go."""
        if event is not None:
            out.append(event)
            snap = self.snapshots.pop(key, None)
            if snap is not None:
                self._event_snapshots[id(event)] = snap
        elif ended:
            self.snapshots.pop(key, None)

    def _read(self, key: PassKey, frame: Frame, plate: Plate, text: Text) -> PlateEvent | None:
        ruled = self.rules.apply(text)
        if ruled is None:
            return None
        read = PlateRead(plate, ruled[0], frame.index, frame.time, ruled[1])
        self.reads += 1
        if self.keep_snapshots and not self.voter.emitted(key):  # its event has one
            kept = self.snapshots.get(key)
            if kept is None or read.text.confidence > kept.read.text.confidence:
                self.snapshots[key] = (
                    Snapshot(ops.host(frame.image), read)
                    if self.snapshot_frames
                    else Snapshot.around(frame.image, read)
                )
        return self.voter.add(key, read)

    def tick(self, now: float) -> list[PlateEvent]:
        """Advance the clock without a frame (a camera gone quiet: the caller
        knows): passes whose tracks are older than tracking.max_age_s end and give
        their events. A camera that sends frames ends its passes by its frames."""
        v_ended = self.vehicles.expire(now)
        o_ended = self.orphans.expire(now)
        events: list[PlateEvent] = []
        for key in _ended(v_ended, o_ended):
            self._settle(key, self.voter.end(key), events, ended=True)
        return events

    def finish(self) -> list[PlateEvent]:
        """End every pass (end of file, shutdown) and return their events."""
        self.vehicles.finish()
        self.orphans.finish()
        events: list[PlateEvent] = []
        for key in self.voter.open_passes:
            self._settle(key, self.voter.end(key), events, ended=True)
        return events

    def take_snapshot(self, event: PlateEvent) -> Snapshot | None:
        """The frame of `event`'s most confident read (when snapshots are kept)."""
        return self._event_snapshots.pop(id(event), None)


def _ended(vehicles: list[Track], plates: list[Track]) -> list[PassKey]:
    """The passes whose tracks ended."""
    return [PassKey("vehicle", t.id) for t in vehicles] + [PassKey("plate", t.id) for t in plates]


def process_many(
    recognizer: Recognizer, items: Sequence[tuple[CameraPipeline, Frame]]
) -> list[list[PlateEvent]]:
    """One frame of each of several cameras, each stage batched across them
    (`Recognizer.many`: what keeps a GPU busy); per camera, exactly what
    `CameraPipeline.process` does. Returns each item's events, in order."""
    batch = Batch.begin(recognizer, items)
    return batch.finish(drive(batch.steps) if batch.steps is not None else [])


@dataclass
class Batch:
    """`process_many` in two halves, for the daemon's `Lanes` (several batches in
    flight): `begin` (motion gating, at submission, in frame order), the
    recogniser's `steps` (which track the vehicles, in submission order: each
    batch waits once before its plate stage), then `finish` (rules and votes;
    call it in submission order, as `Lanes` hands results back)."""

    items: Sequence[tuple[CameraPipeline, Frame]]
    todo: list[int]
    tracked: dict[int, list[tuple[list[int], list[Track]]]]
    steps: Steps[list[FrameResult]] | None

    @staticmethod
    def begin(recognizer: Recognizer, items: Sequence[tuple[CameraPipeline, Frame]]) -> Batch:
        for pipe, _ in items:
            pipe.begun += 1
        gating = [i for i, (pipe, _) in enumerate(items) if pipe.motion is not None]
        thumbs = dict(zip(gating, thumbnails([items[i][1].image for i in gating]), strict=True))
        todo = [i for i, (pipe, frame) in enumerate(items) if not pipe._gated(frame, thumbs.get(i))]
        tracked: dict[int, list[tuple[list[int], list[Track]]]] = {i: [] for i in todo}
        steps = None
        if todo:
            steps = recognizer.steps(
                [items[i][1].image for i in todo],
                [items[i][0].zone for i in todo],
                [items[i][0]._selector(items[i][1], tracked[i]) for i in todo],
            )
        return Batch(items, todo, tracked, steps)

    def finish(self, results: Sequence[FrameResult]) -> list[list[PlateEvent]]:
        """Each item's events (none for a gated frame)."""
        events: list[list[PlateEvent]] = [[] for _ in self.items]
        for i, result in zip(self.todo, results, strict=True):
            pipe, frame = self.items[i]
            tracked = self.tracked[i]
            events[i] = pipe.feed(frame, result, tracked[0] if tracked else None)
        return events
