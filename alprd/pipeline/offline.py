"""``alprd detect``: the same pipeline on files.

Images (files or folders): one result per plate read. Videos: every frame in
order through tracking and voting, one result per event (vehicle pass), decided
when the pass ends on all its reads (no early emission: a file has no latency to
save).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cv2

from alprd import config as cfgmod
from alprd import ops
from alprd.log import get_logger
from alprd.pipeline import annotate
from alprd.pipeline.recognizer import Recognizer
from alprd.pipeline.source import SourceError, classify, iter_file
from alprd.pipeline.stream import CameraPipeline, rules_for
from alprd.pipeline.types import PlateEvent, box_list

log = get_logger("alprd.detect")


@dataclass
class DetectOptions:
    json: bool = False
    save: Path | None = None
    fps: float | None = None
    regions: list[str] | None = None


def run(
    config: cfgmod.Config,
    inputs: list[str],
    options: DetectOptions,
    out: IO[str] = sys.stdout,
    recognizer_factory: Callable[[cfgmod.Config], Recognizer] = Recognizer.load,
) -> int:
    """Process every input; returns the number that failed (each failure is
    reported and the others still run)."""
    recognizer = recognizer_factory(config)
    if options.save:
        options.save.mkdir(parents=True, exist_ok=True)
    failed = 0
    try:
        for url in inputs:
            try:
                if classify(url) in ("image", "folder"):
                    _images(config, recognizer, url, options, out)
                else:
                    _video(config, recognizer, url, options, out)
            except SourceError as exc:
                failed += 1
                log.error("input_failed", source=url, reason=str(exc))
    finally:
        recognizer.close()
    return failed


def _emit(out: IO[str], options: DetectOptions, record: dict[str, Any], human: str) -> None:
    out.write((json.dumps(record) if options.json else human) + "\n")
    out.flush()


def _images(
    config: cfgmod.Config, recognizer: Recognizer, url: str, options: DetectOptions, out: IO[str]
) -> None:
    rules = rules_for(config, options.regions)
    paths = sorted(
        p for p in Path(url).iterdir() if classify(str(p)) == "image"
    ) if classify(url) == "folder" else [Path(url)]  # fmt: skip
    for path in paths:
        try:
            [frame] = list(iter_file(str(path), path.stem))
        except SourceError as exc:
            if len(paths) == 1:
                raise
            log.error("input_failed", source=str(path), reason=str(exc))
            continue
        result = recognizer(ops.host(frame.image))
        shown = []
        for plate, text in result.plates:
            ruled = rules.apply(text)
            shown.append((plate, ruled[0].text if ruled else ""))
            if ruled is None:
                continue
            t, fmt = ruled
            known = rules.known_match(t.text)
            record = {
                "source": str(path),
                "frame": 0,
                "plate": t.text,
                "confidence": round(t.confidence, 4),
                "plate_box": box_list(plate.box),
                "vehicle_box": box_list(plate.vehicle.box if plate.vehicle else None),
                "vehicle_class": plate.vehicle.label if plate.vehicle else None,
                "known_label": known.label if known else None,
                "format": fmt,
            }
            _emit(out, options, record, f"{path}: {t.text} ({t.confidence:.2f})"
                  + (f" {plate.vehicle.label}" if plate.vehicle else ""))  # fmt: skip
        if options.save:
            image = annotate.draw(ops.host(frame.image), result.vehicles, shown)
            cv2.imwrite(str(options.save / f"{path.stem}.jpg"), image)


def _video(
    config: cfgmod.Config, recognizer: Recognizer, url: str, options: DetectOptions, out: IO[str]
) -> None:
    camera = Path(url).stem or "stream"
    pipe = CameraPipeline(
        camera, recognizer, config, regions=options.regions, keep_snapshots=bool(options.save),
        snapshot_frames=True,
        early=False,  # a file has no latency to save: each pass is decided on all its reads
    )  # fmt: skip
    for frame in iter_file(url, camera, options.fps):
        for event in pipe.process(frame):
            _event(url, event, pipe, options, out)
    for event in pipe.finish():
        _event(url, event, pipe, options, out)
    log.info("input_done", source=url, frames=pipe.frames, reads=pipe.reads)


def _event(
    url: str, e: PlateEvent, pipe: CameraPipeline, options: DetectOptions, out: IO[str]
) -> None:
    record = {
        "source": url,
        **e.fields(),
        "first_frame": e.first_frame,
        "last_frame": e.last_frame,
        "first_time": round(e.first_seen, 3),
        "last_time": round(e.last_seen, 3),
    }
    human = (
        f"{url}: {e.plate} ({e.confidence:.2f}) frames {e.first_frame}-{e.last_frame}, "
        f"{e.reads} reads" + (f", {e.vehicle_class}" if e.vehicle_class else "")
    )
    _emit(out, options, record, human)
    snap = pipe.take_snapshot(e) if options.save else None
    if snap is not None and options.save is not None:
        image = annotate.draw(snap.image, [], [(snap.read.plate, e.plate)])
        name = f"{Path(url).stem}-{e.first_frame:06d}-{e.plate}.jpg"
        cv2.imwrite(str(options.save / name), image)
