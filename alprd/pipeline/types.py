"""The typed payloads passed between stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from alprd.ops import AnyImage

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels


@dataclass(frozen=True)
class Frame:
    camera: str
    index: int  # frame number from the source (files: position in the file)
    time: float  # seconds: wall clock for cameras, position for files
    image: AnyImage = field(repr=False, compare=False)  # on the host, or on a GPU


@dataclass(frozen=True)
class Vehicle:
    box: Box
    confidence: float
    label: str  # class name, e.g. "car"


@dataclass(frozen=True)
class Plate:
    box: Box
    confidence: float
    vehicle: Vehicle | None  # None: found on the full frame


@dataclass(frozen=True)
class Text:
    """What the recogniser read on one plate crop, after decoding."""

    text: str
    char_confidences: tuple[float, ...]
    #: Per position, the characters and probabilities the recogniser considered
    #: (best first), for format-guided correction and voting.
    candidates: tuple[tuple[tuple[str, float], ...], ...] = ()

    @property
    def confidence(self) -> float:
        c = self.char_confidences
        return sum(c) / len(c) if c else 0.0


class PassKey(NamedTuple):
    """One pass in front of a camera, by the track that carries it: a vehicle's, or
    that of a plate seen without a vehicle around it."""

    of: Literal["vehicle", "plate"]
    track: int


@dataclass(frozen=True)
class PlateRead:
    """One plate read in one frame, after the plate rules."""

    plate: Plate
    text: Text
    frame: int
    time: float
    #: The regions whose plate format the read fits, sorted and joined by "/"
    #: ("it/sk"); "" when read as printed.
    format: str = ""


@dataclass(frozen=True)
class TextVote:
    """One text the reads of a pass gave: how many reads, and their best confidence."""

    text: str
    reads: int
    confidence: float


@dataclass(frozen=True)
class PlateEvent:
    """One vehicle pass."""

    camera: str
    plate: str
    confidence: float
    char_confidences: tuple[float, ...]
    first_seen: float
    last_seen: float
    first_frame: int
    last_frame: int
    plate_box: Box
    vehicle_box: Box | None
    vehicle_class: str | None
    reads: int
    track_id: int
    known_label: str | None = None
    known_plate: str | None = None
    #: The regions whose plate format `plate` fits, sorted and joined by "/"
    #: ("it/sk"); "" when read as printed (no format fits).
    format: str = ""
    #: What the pass's reads said, most supported first (at most `vote.MAX_TEXTS`):
    #: the voted plate and the readings it won against.
    texts: tuple[TextVote, ...] = ()
    #: The plate lists' decision ("allow", "deny", "unknown"; "" while there are
    #: no lists) and the entry that decided it: its list, plate, label, distance.
    decision: str = ""
    list_name: str | None = None
    list_plate: str | None = None
    list_label: str | None = None
    list_distance: float | None = None
    #: "arriving", "leaving" or "unknown" (`alprd.pipeline.direction`)
    direction: str = "unknown"

    def fields(self) -> dict[str, object]:
        """What every output of an event says (the daemon's records add an id and
        wall-clock times, `alprd detect` the file and times into it)."""
        return {
            "camera": self.camera,
            "plate": self.plate,
            "confidence": round(self.confidence, 4),
            "char_confidences": [round(c, 4) for c in self.char_confidences],
            "plate_box": box_list(self.plate_box),
            "vehicle_box": box_list(self.vehicle_box),
            "vehicle_class": self.vehicle_class,
            "reads": self.reads,
            "known_label": self.known_label,
            "known_plate": self.known_plate,
            "format": self.format,
            "texts": [
                {"text": t.text, "reads": t.reads, "confidence": round(t.confidence, 4)}
                for t in self.texts
            ],
            "decision": self.decision,
            "list": self.list_name,
            "list_plate": self.list_plate,
            "list_label": self.list_label,
            "list_distance": self.list_distance,
            "direction": self.direction,
        }


@dataclass(frozen=True)
class PassCall:
    """A gate camera's pass decided before it ends: its plate is read consistently
    enough (`alprd.pipeline.vote.Voter`, ``[gate]``); the lists and the actions
    take it from here (`alprd.sinks.gate`)."""

    camera: str
    track_id: int
    plate: str
    confidence: float
    reads: int  # reads that agree with `plate`
    time: float  # the deciding read's frame time (wall clock for cameras)
    frame: int
    direction: str  # "arriving", "leaving" or "unknown", from the reads so far
    #: the frame time of the pass's first read that says `plate` (the first frame
    #: on which the plate was readable)
    readable_time: float = 0.0


def box_list(box: Box | None) -> list[float] | None:
    """A box as JSON: [x1, y1, x2, y2] to 0.1 px, or None."""
    return None if box is None else [round(v, 1) for v in box]
