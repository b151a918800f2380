"""Reads of one vehicle pass -> one event (pure; times come from the reads).

`vote` picks the length the reads agree on, then combines them position by
position, weighting each character by its confidence. `Voter` emits a pass's
event when its track ends, or as soon as ``min_agreeing`` reads agree with the
vote (0: only at the end); the same plate (within ``dedupe_max_distance``
edits) on the same camera is not emitted again within ``dedupe_window_s``. A
pass holds at most ``max_reads`` reads (the most confident; a car parked in
view for hours is read all along): its first and last times, frames and read
count cover every read. Reads after its event are counted, not kept. The
event's ``format`` names the regions whose format the voted plate fits, when
any of the pass's reads was decoded with a format ("" when all were read as
printed); its ``texts`` list what the kept reads said, by text (how many reads,
their best confidence), most supported first, at most `MAX_TEXTS`.

A gate camera's pass is also *called* before it ends (``decide_after`` > 0): once
that many reads agree with the vote and its confidence is at least
``decide_confidence`` (and, with ``decide_when_heading``, once its direction shows),
a `PassCall` goes to `Voter.calls`, once per pass; its event follows as usual.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from alprd.pipeline.rules import FormatOf, Known
from alprd.pipeline.types import Box, PassCall, PassKey, PlateEvent, PlateRead, TextVote
from alprd.plates import levenshtein

#: At most this many texts of a pass in its event (`PlateEvent.texts`).
MAX_TEXTS = 8


def vote(reads: Sequence[PlateRead]) -> tuple[str, tuple[float, ...]]:
    """The plate text the reads support best, and each character's support.

    First the length: that of the read text closest to all the others (the one
    with the least confidence-weighted edit distance to every read), so a band
    letter read now and then, or a character missed at a distance, does not
    split the vote. Then each position among the reads of that length: the
    character with the largest summed confidence; its support is that sum over
    the number of those reads."""
    texts = [r for r in reads if r.text.text]
    if not texts:
        return "", ()
    weight: dict[str, float] = defaultdict(float)
    for r in texts:
        weight[r.text.text] += r.text.confidence
    medoid = min(
        weight,
        key=lambda t: (sum(w * levenshtein(t, u) for u, w in weight.items()), -weight[t], t),
    )
    group = [r for r in texts if len(r.text.text) == len(medoid)]
    chars, support = [], []
    for i in range(len(medoid)):
        score: dict[str, float] = defaultdict(float)
        for r in group:
            score[r.text.text[i]] += r.text.char_confidences[i]
        best = max(score, key=lambda c: (score[c], c))
        chars.append(best)
        support.append(round(score[best] / len(group), 4))
    return "".join(chars), tuple(support)


def tally(reads: Sequence[PlateRead], limit: int = MAX_TEXTS) -> tuple[TextVote, ...]:
    """The texts `reads` gave, by summed confidence (then text), at most `limit`."""
    weight: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    best: dict[str, float] = defaultdict(float)
    for r in reads:
        if r.text.text:
            t, c = r.text.text, r.text.confidence
            weight[t] += c
            count[t] += 1
            best[t] = max(best[t], c)
    order = sorted(weight, key=lambda t: (-weight[t], t))[:limit]
    return tuple(TextVote(t, count[t], round(best[t], 4)) for t in order)


@dataclass
class _Pass:
    limit: int
    reads: list[PlateRead] = field(default_factory=list)  # the `limit` most confident
    count: int = 0  # every read, kept or not; and the span of all of them:
    first_time: float = float("inf")
    last_time: float = float("-inf")
    first_frame: int = 2**62
    last_frame: int = -1
    formatted: bool = False  # a read was decoded with a plate format
    emitted: bool = False
    called: bool = False  # its `PassCall` is out
    first_read: PlateRead | None = None  # the earliest and the latest read: which
    last_read: PlateRead | None = None  # way the pass went
    #: (reads when voted, the vote's text, its support, the reads that agree)
    _vote: tuple[int, str, tuple[float, ...], int] = (0, "", (), 0)

    def add(self, read: PlateRead) -> None:
        self.count += 1
        if read.time < self.first_time:
            self.first_read = read
        if read.time >= self.last_time:
            self.last_read = read
        self.first_time, self.last_time = (
            min(self.first_time, read.time),
            max(self.last_time, read.time),
        )
        self.first_frame, self.last_frame = (
            min(self.first_frame, read.frame),
            max(self.last_frame, read.frame),
        )
        if self.emitted:  # its event is out: nothing more to vote on
            return
        self.formatted = self.formatted or bool(read.format)
        self.reads.append(read)
        if len(self.reads) > self.limit:
            weakest = min(range(len(self.reads)), key=lambda i: self.reads[i].text.confidence)
            del self.reads[weakest]
            self._vote = (-1, "", (), 0)  # same length, other reads: vote again

    def current(self) -> tuple[str, tuple[float, ...], int]:
        """The vote over the kept reads (text, per-character support) and how many
        reads agree with it; counted again only after a new read (asked on every
        frame by per-track skipping, and by the gate's early call)."""
        if self._vote[0] != len(self.reads):
            text, support = vote(self.reads)
            agree = sum(r.text.text == text for r in self.reads)
            self._vote = (len(self.reads), text, support, agree)
        return self._vote[1:]

    def agreeing(self) -> int:
        """How many reads agree with the current vote."""
        return self.current()[2]


class Voter:
    def __init__(
        self,
        camera: str,
        *,
        min_agreeing: int = 3,
        min_confidence: float = 0.0,
        dedupe_window_s: float = 60.0,
        dedupe_max_distance: int = 1,
        known: Callable[[str], Known | None] = lambda plate: None,
        format_of: FormatOf = lambda plate: "",
        max_reads: int = 100,
        travel: Callable[[Box, Box], str] = lambda first, last: "unknown",
        decide_after: int = 0,
        decide_confidence: float = 0.0,
        decide_when_heading: bool = False,
    ) -> None:
        """`known`: the known plate a voted plate matches; `format_of`: the regions
        whose format it fits (`PlateRules.known_match`, `PlateRules.format_of`);
        `travel`: the direction of a pass from its first and last box
        (`alprd.pipeline.direction`); `decide_after` (0: never), `decide_confidence`,
        `decide_when_heading`: when a pass is called (`calls`)."""
        if min_agreeing < 0:
            raise ValueError("min_agreeing must be >= 0")
        if max_reads < max(min_agreeing, 1):
            raise ValueError("max_reads must be >= min_agreeing and >= 1")
        self.max_reads = max_reads
        self.camera = camera
        self.min_agreeing = min_agreeing
        self.min_confidence = min_confidence
        self.dedupe_window_s = dedupe_window_s
        self.dedupe_max_distance = dedupe_max_distance
        self._known = known
        self._format_of = format_of
        self._travel = travel
        self._passes: dict[PassKey, _Pass] = {}
        self._recent: list[tuple[str, float]] = []  # (plate, time emitted)
        self.suppressed = 0  # events not emitted as duplicates
        if decide_after < 0 or decide_after > max_reads:
            raise ValueError("decide_after must be in 0..max_reads")
        self.decide_after = decide_after
        self.decide_confidence = decide_confidence
        self.decide_when_heading = decide_when_heading
        #: passes called and not yet taken (`take_calls`): at most one per open pass
        self.calls: list[PassCall] = []

    def add(self, key: PassKey, read: PlateRead) -> PlateEvent | None:
        """Record a read of pass `key`; returns its event if enough reads agree now."""
        p = self._passes.get(key)
        if p is None:
            p = self._passes[key] = _Pass(self.max_reads)
        p.add(read)
        if self.decide_after and not p.called and not p.emitted:
            self._call(key, p, read)
        if p.emitted or not self.min_agreeing:
            return None
        return self._emit(key, p) if p.agreeing() >= self.min_agreeing else None

    def end(self, key: PassKey) -> PlateEvent | None:
        """Pass `key` is over (its track ended): its event, unless already out."""
        p = self._passes.pop(key, None)
        if p is None or p.emitted or not p.reads:
            return None
        return self._emit(key, p)

    def take_calls(self) -> list[PassCall]:
        """The passes called since the last time asked."""
        calls, self.calls = self.calls, []
        return calls

    def _call(self, key: PassKey, p: _Pass, read: PlateRead) -> None:
        """Call pass `key` if its reads now agree enough (after `read`)."""
        text, support, agreeing = p.current()
        if agreeing < self.decide_after:
            return
        confidence = sum(support) / len(support) if support else 0.0
        if not text or confidence < self.decide_confidence:
            return
        heading = self._direction(p)
        if self.decide_when_heading and heading == "unknown":
            return
        p.called = True
        self.calls.append(PassCall(
            camera=self.camera, track_id=key.track, plate=text,
            confidence=round(confidence, 4), reads=agreeing, time=read.time,
            frame=read.frame, direction=heading,
            readable_time=min(r.time for r in p.reads if r.text.text == text),
        ))  # fmt: skip

    def agreeing(self, key: PassKey) -> int:
        """How many reads of pass `key` agree with its current vote."""
        p = self._passes.get(key)
        return p.agreeing() if p is not None else 0

    def pending(self, key: PassKey) -> bool:
        """Whether pass `key` is still to be called (`decide_after` > 0)."""
        p = self._passes.get(key)
        return bool(self.decide_after) and p is not None and not p.called and not p.emitted

    def emitted(self, key: PassKey) -> bool:
        """Whether pass `key`'s event is out (its later reads change nothing)."""
        p = self._passes.get(key)
        return p is not None and p.emitted

    @property
    def reads_held(self) -> int:
        """Reads kept by the open passes (each holds at most `max_reads`)."""
        return sum(len(p.reads) for p in self._passes.values())

    @property
    def open_passes(self) -> list[PassKey]:
        return list(self._passes)

    def finish(self) -> list[PlateEvent]:
        events = [self.end(k) for k in list(self._passes)]
        return [e for e in events if e is not None]

    def _emit(self, key: PassKey, p: _Pass) -> PlateEvent | None:
        p.emitted = True
        text, support, _ = p.current()
        confidence = sum(support) / len(support) if support else 0.0
        if not text or confidence < self.min_confidence:
            return None
        last = p.last_time
        self._recent = [(t, at) for t, at in self._recent if last - at <= self.dedupe_window_s]
        if any(levenshtein(text, t) <= self.dedupe_max_distance for t, _ in self._recent):
            self.suppressed += 1
            return None
        self._recent.append((text, last))
        best = max(p.reads, key=lambda r: r.text.confidence)
        known = self._known(text)
        plate = best.plate
        return PlateEvent(
            camera=self.camera,
            plate=text,
            confidence=round(confidence, 4),
            char_confidences=support,
            first_seen=p.first_time,
            last_seen=last,
            first_frame=p.first_frame,
            last_frame=p.last_frame,
            plate_box=plate.box,
            vehicle_box=plate.vehicle.box if plate.vehicle else None,
            vehicle_class=plate.vehicle.label if plate.vehicle else None,
            reads=p.count,
            track_id=key.track,
            known_label=known.label if known else None,
            known_plate=known.plate if known else None,
            format=self._format_of(text) if p.formatted else "",
            texts=tally(p.reads),
            direction=self._direction(p),
        )

    def _direction(self, p: _Pass) -> str:
        """From the vehicle's boxes where the first and the last read have one, else
        from the plate's."""
        first, last = p.first_read, p.last_read
        if first is None or last is None or first is last:
            return "unknown"
        a, b = first.plate, last.plate
        if a.vehicle is not None and b.vehicle is not None:
            return self._travel(a.vehicle.box, b.vehicle.box)
        return self._travel(a.box, b.box)
