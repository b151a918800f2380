"""Pure parts of the pipeline: geometry, CTC decoding, rules, tracker, voter.
Tables of input -> expected; no engines, no clock."""

from __future__ import annotations

import numpy as np
import pytest

from alprd import ops
from alprd.config import Config
from alprd.pipeline import geometry
from alprd.pipeline.detect import bucket, split
from alprd.pipeline.ocr import Alphabet, trim_edges
from alprd.pipeline.rules import PlateRules
from alprd.pipeline.stream import CameraPipeline
from alprd.pipeline.track import Tracker
from alprd.pipeline.types import Frame, PassKey, Plate, PlateRead, Text, TextVote, Vehicle
from alprd.pipeline.vote import Voter, tally, vote
from alprd.plates import levenshtein, parse_format

# --------------------------------------------------------------------------- geometry

SQUARE = [(0, 0), (10, 0), (10, 10), (0, 10)]
TRIANGLE = [(0, 0), (10, 0), (0, 10)]


@pytest.mark.parametrize(
    ("point", "polygon", "expected"),
    [
        ((5, 5), SQUARE, True),
        ((15, 5), SQUARE, False),
        ((2, 2), TRIANGLE, True),
        ((8, 8), TRIANGLE, False),
        ((-1, -1), TRIANGLE, False),
    ],
)
def test_inside(point, polygon, expected):
    assert geometry.inside(point, polygon) is expected


def test_boxes():
    assert geometry.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert geometry.expand((10, 10, 20, 30), 0.1, -0.25) == (9.0, 15.0, 21.0, 25.0)
    assert geometry.clip_box((-5, 2.4, 50.6, 8), 40, 30) == (0, 2, 40, 8)
    assert geometry.centre((0, 0, 10, 20)) == (5, 10)


# --------------------------------------------------------------------------- CTC decoding

DICT = ["0", "1", "a", "A", "B", "-", "\uff2f", "O", "中"]  # classes 1..9, 10 = space


def probs(path: list[str]) -> np.ndarray:
    """One-hot-ish CTC output for a path of dictionary entries ('' = blank)."""
    classes = ["", *DICT, " "]
    out = np.full((len(path), len(classes)), 0.001, np.float32)
    for t, c in enumerate(path):
        out[t, classes.index(c)] = 0.99
    return out


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (["A", "A", "", "B", "1"], "AB1"),
        (["A", "", "A"], "AA"),
        (["a", "\uff2f", "0"], "AO0"),  # lower case and full width fold onto the charset
        (["A", "-", "B"], "AB"),  # a separator goes to the blank, not to a letter
        (["中", "B", " "], "B"),
        (["", "", ""], ""),
    ],
)
def test_alphabet_folds_and_decodes(path, expected):
    alphabet = Alphabet(DICT, "AB01O")
    text = alphabet.decode(alphabet.reduce(probs(path)[None])[0])
    assert text.text == expected
    assert all(c == pytest.approx(0.99, abs=0.02) for c in text.char_confidences)


def test_decode_keeps_runner_up_candidates():
    alphabet = Alphabet(DICT, "AB01O")
    p = probs(["O", "1"])
    p[0, DICT.index("0") + 1] = 0.4  # '0' is the runner-up of 'O'
    text = alphabet.decode(alphabet.reduce(p[None])[0])
    assert [c for c, _ in text.candidates[0][:2]] == ["O", "0"]


def test_a_character_takes_the_confidence_of_its_most_likely_step():
    """A character spread over several steps gets the probability (and the
    runner-ups) of the step where it is most likely; a batch decodes as each
    sequence alone."""
    alphabet = Alphabet(DICT, "AB01O")
    p = probs(["A", "A", "A", "", "B"])
    p[:3, DICT.index("A") + 1] = [0.6, 0.9, 0.7]
    p[2, DICT.index("B") + 1] = 0.25  # runner-up only at the third step
    text = alphabet.decode(alphabet.reduce(p[None])[0])
    assert text.text == "AB"
    assert text.char_confidences[0] == pytest.approx(0.9, abs=0.01)
    assert text.candidates[0][0] == ("A", pytest.approx(0.9, abs=0.01))
    other = probs(["1", "", "0", "O"])
    batch = alphabet.decode_many(alphabet.reduce(np.stack([p, np.pad(other, ((0, 1), (0, 0)))])))
    assert batch[0] == text
    assert batch[1].text == alphabet.decode(alphabet.reduce(other[None])[0]).text == "10O"


def test_alphabet_rejects_a_foreign_dictionary():
    with pytest.raises(ValueError, match="does not belong"):
        Alphabet(DICT, "AB").reduce(np.zeros((1, 3, 5), np.float32))


@pytest.mark.parametrize(
    ("confs", "kept"),
    [
        ((0.3, 0.9, 0.9, 0.4), "BC"),
        ((0.9, 0.9, 0.9, 0.9), "ABCD"),
        ((0.1, 0.1, 0.1, 0.1), ""),
        ((0.9, 0.2, 0.9, 0.9), "ABCD"),  # only the ends are trimmed
    ],
)
def test_trim_edges(confs, kept):
    assert trim_edges(Text("ABCD", confs), 0.5).text == kept


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("pattern", "sizes"),
    [
        ("[A-Z]{3}[0-9]{4}", [26, 26, 26, 10, 10, 10, 10]),
        ("[A-Z]{3}\\d[A-Z]\\d{2}", [26, 26, 26, 10, 26, 10, 10]),
        ("KA.{2}", [1, 1, 36, 36]),
        ("[AB0]", [3]),
    ],
)
def test_parse_format(pattern, sizes):
    assert [len(s) for s in parse_format(pattern)] == sizes


@pytest.mark.parametrize("bad", ["[A-Z]+", "(AB|CD)", "[A-Z]*", ""])
def test_parse_format_rejects_variable_patterns(bad):
    with pytest.raises(ValueError):
        parse_format(bad)


def text(s: str, conf: float = 0.9, alts: dict[int, list[tuple[str, float]]] | None = None) -> Text:
    cands = []
    for i, c in enumerate(s):
        cands.append(((c, conf), *(alts or {}).get(i, [])))
    return Text(s, (conf,) * len(s), tuple(cands))


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (text("ABC1234"), ("ABC1234", "br")),
        (text("ABC1D23"), ("ABC1D23", "br")),  # Mercosur
        (text("AB01234", alts={2: [("O", 0.3)]}), ("ABO1234", "br")),  # 0 -> O in a letter slot
        (text("ABC12B4", alts={5: [("8", 0.2)]}), ("ABC1284", "br")),  # B -> 8 in a digit slot
        (Text("BRABC1234", (0.3, 0.4, *(0.95,) * 7)), ("ABC1234", "br")),  # band letters dropped
        # a stray stroke read inside (plates-br NTD9247 was read NTJD9247): the doubtful
        # J goes, not the confident N a window would have cut
        (Text("NTJD9247", (0.9999, 0.9995, 0.947, *(0.999,) * 5)), ("NTD9247", "br")),
        # a confident character is kept, a doubtful one dropped, wherever it is
        (Text("ABCX1234", (0.99, 0.99, 0.99, 0.4, *(0.99,) * 4)), ("ABC1234", "br")),
        (text("ABC12"), ("ABC12", "")),  # too short for any format: read as printed
    ],
)
def test_format_correction(read, expected):
    rules = PlateRules(regions=["br"])
    got = rules.apply(read)
    assert (None if got is None else (got[0].text, got[1])) == expected


def test_a_format_can_be_required():
    rules = PlateRules(regions=["br"], require_format=True)
    assert rules.apply(text("ABC12")) is None
    assert rules.apply(text("ABC1234")) == (text("ABC1234"), "br")


def test_a_read_far_longer_than_any_format_loses_its_ends():
    rules = PlateRules(regions=["br"])
    long = Text("XXXXXABC1234", (*(0.2,) * 5, *(0.95,) * 7))
    assert rules.apply(long)[0].text == "ABC1234"


def test_without_formats_edges_are_trimmed_and_min_length_applies():
    rules = PlateRules(regions=[], min_length=4, min_char_confidence=0.5)
    assert rules.apply(Text("XL417VS", (0.3, *(0.9,) * 6)))[0].text == "L417VS"
    assert rules.apply(Text("AB1", (0.9,) * 3)) is None


def test_format_not_required_keeps_a_non_matching_read():
    rules = PlateRules(regions=["br"], require_format=False, min_length=4)
    assert rules.apply(text("L417VS")) == (text("L417VS"), "")


def test_replace_rules_in_order():
    rules = PlateRules(regions=[], replace=[("^0", "O"), ("O", "Q")])
    assert rules.apply(text("0AB1"))[0].text == "QAB1"


@pytest.mark.parametrize(
    ("a", "b", "d"), [("ABC", "ABC", 0), ("ABC", "ABD", 1), ("L417VS", "LL417VS", 1), ("", "AB", 2)]
)
def test_levenshtein(a, b, d):
    assert levenshtein(a, b) == d


def test_known_plates_fuzzy():
    rules = PlateRules(known={"AB123CD": "staff", "XY999": "visitor"}, known_max_distance=1)
    assert rules.known_match("AB123CD").distance == 0
    k = rules.known_match("AB123C0")
    assert (k.plate, k.label, k.distance) == ("AB123CD", "staff", 1)
    assert rules.known_match("AB12XXX") is None


# --------------------------------------------------------------------------- tracker


def test_tracker_follows_overlap_and_ends_stale_tracks():
    tr = Tracker(iou_min=0.3, max_shift=0.5, max_age_s=1.0)
    ids, ended = tr.update([(0, 0, 100, 100), (300, 0, 400, 100)], now=0.0)
    assert ids == [1, 2] and ended == []
    ids, _ = tr.update([(310, 0, 410, 100), (10, 0, 110, 100)], now=0.2)
    assert ids == [2, 1]  # matched by overlap, whatever the order
    ids, ended = tr.update([(10, 0, 110, 100)], now=1.0)
    assert ids == [1] and ended == []
    ids, ended = tr.update([(10, 0, 110, 100)], now=1.3)
    assert ids == [1] and [t.id for t in ended] == [2]  # 2 not seen since 0.2 s


def test_tracker_joins_a_fast_move_by_centre_distance():
    tr = Tracker(iou_min=0.3, max_shift=0.5, max_age_s=1.0)
    tr.update([(0, 0, 100, 100)], now=0.0)
    ids, _ = tr.update([(60, 0, 160, 100)], now=0.2)  # IoU 0.25, centre moved 60 < 70
    assert ids == [1]
    ids, _ = tr.update([(400, 0, 500, 100)], now=0.4)  # too far: a new vehicle
    assert ids == [2]


def test_a_long_gap_between_processed_frames_does_not_end_a_track_still_in_view():
    """A busy host processes a 5 fps camera's frames 1.6 s apart (the others are
    dropped): the vehicle is still there, its track goes on; a track ends only
    once missed in min_misses frames in a row and older than max_age_s."""
    tr = Tracker(max_age_s=1.5, min_misses=2)
    [tid], _ = tr.update([(0, 0, 100, 100)], now=0.0)
    ids, ended = tr.update([(20, 0, 120, 100)], now=1.6)
    assert ids == [tid] and ended == []
    assert tr.update([], now=3.2) == ([], [])  # missed once: not yet
    ids, ended = tr.update([], now=3.4)
    assert ids == [] and [t.id for t in ended] == [tid]
    quick = Tracker(max_age_s=1.5, min_misses=2)  # a fast camera: many misses,
    quick.update([(0, 0, 100, 100)], now=0.0)  # the age decides
    assert all(quick.update([], now=k / 25)[1] == [] for k in range(1, 38))
    assert [t.id for t in quick.update([], now=38 / 25)[1]] == [1]


def test_expire_ends_tracks_by_age_alone():
    tr = Tracker(max_age_s=1.0, min_misses=5)
    tr.update([(0, 0, 10, 10)], now=0.0)
    assert tr.expire(0.9) == []
    assert [t.id for t in tr.expire(1.1)] == [1] and tr.live == []


def test_a_pass_processed_far_apart_is_one_event_with_all_its_reads():
    """One vehicle pass of a 5 fps camera on a host that keeps up with every
    eighth frame only: one event, carrying every read (before, the pass was cut
    in two at each gap, the first part emitted with one read, the rest dropped as
    a duplicate)."""
    from alprd.config import Config
    from alprd.pipeline.recognizer import FrameResult
    from alprd.pipeline.stream import CameraPipeline

    pipe = CameraPipeline("rear", None, Config(), early=False, motion=False)  # type: ignore[arg-type]
    image = np.zeros((4, 4, 3), np.uint8)
    events = []
    for k in range(6):  # 1.6 s apart, the car creeping forward
        car = Vehicle((10 + 5 * k, 10, 110 + 5 * k, 90), 0.9, "car")
        plate = Plate((40 + 5 * k, 60, 80 + 5 * k, 70), 0.8, car)
        result = FrameResult([car], [(plate, Text("L417VS", (0.9,) * 6))])
        events += pipe.feed(Frame("rear", 8 * k, 1.6 * k, image), result)
    for k in range(6, 8):  # the car has gone
        events += pipe.feed(Frame("rear", 8 * k, 1.6 * k, image), FrameResult([], []))
    assert [(e.plate, e.reads) for e in events] == [("L417VS", 6)]
    assert pipe.voter.suppressed == 0


def test_tracker_finish_ends_everything():
    tr = Tracker()
    tr.update([(0, 0, 1, 1)], now=0.0)
    assert [t.id for t in tr.finish()] == [1] and tr.live == []


# --------------------------------------------------------------------------- voting

PLATE = Plate((0, 0, 10, 5), 0.9, Vehicle((0, 0, 100, 100), 0.9, "car"))


def read(s: str, t: float = 0.0, conf: float = 0.9, frame: int = 0) -> PlateRead:
    return PlateRead(PLATE, Text(s, (conf,) * len(s)), frame, t)


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        (["L417VS"] * 5 + ["LL417VS"] * 3 + ["L47VS"] * 2, "L417VS"),
        (["ABC123", "ABC128", "ABC123"], "ABC123"),
        (["ABC123", "A8C123", "ABC123", "A8C128"], "ABC123"),
        ([""], ""),
    ],
)
def test_vote(reads, expected):
    assert vote([read(s) for s in reads])[0] == expected


def test_vote_weights_by_confidence():
    reads = [read("ABC123", conf=0.95), read("ABC128", conf=0.3), read("ABC128", conf=0.3)]
    text, support = vote(reads)
    assert text == "ABC123"
    assert support[-1] == pytest.approx(0.95 / 3, abs=1e-3)


def test_one_event_per_pass_at_track_end():
    v = Voter("gate", min_agreeing=0)
    for i, s in enumerate(["ABC123", "ABC123", "A8C123"]):
        assert v.add(PassKey("vehicle", 17), read(s, t=i, frame=i)) is None
    event = v.end(PassKey("vehicle", 17))
    assert (event.plate, event.reads, event.first_frame, event.last_frame) == ("ABC123", 3, 0, 2)
    assert event.track_id == 17  # the track that carried the pass
    assert event.vehicle_class == "car" and event.camera == "gate"
    assert v.end(PassKey("vehicle", 17)) is None


def test_the_event_lists_what_the_reads_said_most_supported_first():
    v = Voter("gate", min_agreeing=0)
    said = [("ABC123", 0.9), ("A8C123", 0.6), ("ABC123", 0.8), ("", 0.0), ("ABC128", 0.7)]
    for i, (s, conf) in enumerate(said):
        v.add(PassKey("vehicle", 3), read(s, t=i, conf=conf, frame=i))
    event = v.end(PassKey("vehicle", 3))
    assert event.texts == (
        TextVote("ABC123", 2, 0.9), TextVote("ABC128", 1, 0.7), TextVote("A8C123", 1, 0.6),
    )  # fmt: skip
    assert event.fields()["texts"][0] == {"text": "ABC123", "reads": 2, "confidence": 0.9}
    many = [read(f"AB{i:04d}", conf=0.5 + i / 100) for i in range(20)]
    assert [t.text for t in tally(many, limit=3)] == ["AB0019", "AB0018", "AB0017"]


def test_early_emission_once_enough_reads_agree():
    v = Voter("gate", min_agreeing=3)
    assert v.add(PassKey("vehicle", 1), read("ABC123")) is None
    assert v.add(PassKey("vehicle", 1), read("ABC123")) is None
    event = v.add(PassKey("vehicle", 1), read("ABC123"))
    assert event is not None and event.plate == "ABC123"
    assert v.add(PassKey("vehicle", 1), read("ABC123")) is None  # the pass is out already
    assert v.end(PassKey("vehicle", 1)) is None


def test_a_pass_read_for_hours_keeps_its_most_confident_reads_and_counts_all():
    """A car parked in view is read on every frame; the pass holds `max_reads`
    reads (the most confident) and the event still spans and counts every read."""
    v = Voter("gate", min_agreeing=0, max_reads=50)
    for i in range(20_000):  # a misread plate, weakly read, most of the time
        text, conf = ("ABC123", 0.9) if i % 4 == 0 else ("A8C128", 0.4)
        v.add(PassKey("vehicle", 1), read(text, t=1000.0 + i / 5, conf=conf, frame=10 + i))
    assert v.reads_held == 50
    event = v.end(PassKey("vehicle", 1))
    assert event.plate == "ABC123" and event.reads == 20_000
    assert (event.first_frame, event.last_frame) == (10, 20_009)
    assert (event.first_seen, event.last_seen) == (1000.0, 1000.0 + 19_999 / 5)
    assert v.reads_held == 0


def test_reads_after_the_event_are_counted_not_kept():
    v = Voter("gate", min_agreeing=3, max_reads=10)
    car = PassKey("vehicle", 1)
    assert [v.add(car, read("ABC123", frame=i)) is None for i in range(3)] == [True] * 2 + [False]
    assert v.emitted(PassKey("vehicle", 1)) and v.agreeing(PassKey("vehicle", 1)) == 3
    for i in range(3, 1000):
        assert v.add(PassKey("vehicle", 1), read("ABC123", frame=i)) is None
    assert v.reads_held == 3 and v.agreeing(PassKey("vehicle", 1)) == 3
    assert v.end(PassKey("vehicle", 1)) is None and not v.emitted(PassKey("vehicle", 1))


def test_max_reads_below_min_agreeing_is_refused():
    with pytest.raises(ValueError, match="max_reads"):
        Voter("gate", min_agreeing=10, max_reads=5)


def test_the_same_plate_within_the_window_is_not_emitted_twice():
    v = Voter("gate", min_agreeing=0, dedupe_window_s=60, dedupe_max_distance=1)
    v.add(PassKey("vehicle", 1), read("ABC123", t=0))
    assert v.end(PassKey("vehicle", 1)) is not None
    v.add(PassKey("vehicle", 2), read("ABC128", t=30))  # one character off: the same car, misread
    assert v.end(PassKey("vehicle", 2)) is None and v.suppressed == 1
    v.add(PassKey("vehicle", 3), read("ABC123", t=100))  # outside the window: a new visit
    assert v.end(PassKey("vehicle", 3)) is not None


def test_low_confidence_passes_are_not_emitted_and_known_plates_are_labelled():
    rules = PlateRules(known={"ABC123": "staff"}, known_max_distance=1)
    v = Voter("gate", min_agreeing=0, min_confidence=0.5, known=rules.known_match)
    v.add(PassKey("vehicle", 1), read("XYZ999", conf=0.2))
    assert v.end(PassKey("vehicle", 1)) is None
    v.add(PassKey("vehicle", 2), read("ABC12E"))
    event = v.end(PassKey("vehicle", 2))
    assert (event.known_label, event.known_plate) == ("staff", "ABC123")


def test_tick_ends_quiet_tracks():
    tr = Tracker(max_age_s=1.0)
    tr.update([(0, 0, 10, 10)], now=0.0)
    assert tr.update([], now=0.5) == ([], [])
    ids, ended = tr.update([], now=1.6)
    assert ids == [] and [t.id for t in ended] == [1]


# --------------------------------------------------------------------------- motion gating


def scene(shift: int = 0, size: int = 60) -> np.ndarray:
    """A 16:9 frame: a textured background and a bright square `shift` px right."""
    rng = np.random.default_rng(0)
    img = (rng.integers(60, 90, (360, 640, 3))).astype(np.uint8)
    img[150 : 150 + size, 100 + shift : 100 + shift + size] = 230
    return img


def test_motion_gate_skips_a_still_scene_and_not_a_moving_one():
    from alprd.pipeline.motion import MotionGate

    gate = MotionGate(pixel_threshold=12, min_area=0.003, max_skip_s=10)
    assert not gate.still(scene(), 0.0)  # the first frame is always searched
    assert all(gate.still(scene(), t / 10) for t in range(1, 20))  # nothing moved
    assert not gate.still(scene(shift=40), 2.0)  # the square moved: search
    assert gate.still(scene(shift=40), 2.1)  # the new reference is that frame


def test_motion_gate_adds_up_a_slow_change_and_searches_at_least_every_max_skip():
    from alprd.pipeline.motion import MotionGate

    gate = MotionGate(pixel_threshold=12, min_area=0.003, max_skip_s=10)
    gate.still(scene(), 0.0)
    outcomes = [gate.still(scene(shift=s), s / 10) for s in range(1, 30)]  # 1 px a frame
    # one pixel is not motion, two are: compared with the last searched frame (not
    # the previous one, which would skip the creep for good), every second frame
    # is searched and becomes the reference
    assert outcomes == [True, False] * 14 + [True]
    timed = MotionGate(max_skip_s=1.0)
    timed.still(scene(), 0.0)
    assert timed.still(scene(), 0.5)
    assert not timed.still(scene(), 1.5)  # searched anyway after max_skip_s


def test_tracker_hold_keeps_still_tracks_alive():
    t = Tracker(max_age_s=1.0)
    [tid], _ = t.update([(0, 0, 10, 10)], 0.0)
    for now in (0.8, 1.6, 2.4):  # gated frames: nothing moved
        t.hold(now)
    ids, ended = t.update([(0, 0, 10, 10)], 3.0)
    assert ids == [tid] and ended == []


def test_batches_are_padded_with_repeats_to_the_engine_batch_or_its_bucket() -> None:
    items = list("abcdefghij")
    # an engine built for one batch size: every batch that size
    assert split(items, 4, any_batch=False) == [
        (list("abcd"), 4), (list("efgh"), 4), (list("ijjj"), 2),
    ]  # fmt: skip
    # an engine that runs any batch: the last one only up to its power of two
    assert split(items, 8, any_batch=True) == [(list("abcdefgh"), 8), (list("ij"), 2)]
    assert split(list("abc"), 8, any_batch=True) == [(list("abcc"), 3)]
    assert split([], 4, any_batch=False) == []
    assert [bucket(n, 16) for n in (1, 2, 3, 5, 9, 16, 17)] == [1, 2, 4, 8, 16, 16, 16]


class CountingImage(ops.DeviceImage):
    """A stand-in for a frame on a GPU (none here): a host array behind the
    `DeviceImage` interface that counts the copies back to the host."""

    copies = 0

    def __init__(self, array: np.ndarray) -> None:
        super().__init__(array.shape)
        self.array = array

    @property
    def data(self) -> object:
        return self.array

    def download(self) -> np.ndarray:
        return self.array.copy()

    def region(self, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        return self.array[y1:y2, x1:x2].copy()

    def shrunk(self, width: int, height: int) -> np.ndarray:
        CountingImage.copies += 1
        return ops.shrink(self.array, width, height)

    @classmethod
    def shrunk_many(cls, images, width, height):  # type: ignore[no-untyped-def]
        cls.copies += 1  # one copy back for the whole group
        return [ops.shrink(i.array, width, height) for i in images]


def test_motion_thumbnails_of_a_batch_are_one_copy_per_shape_and_the_same_as_one_by_one():
    from alprd.pipeline.motion import thumbnails

    small = scene(size=30)[:180, :320].copy()
    images = [scene(), scene(shift=20), small, scene(shift=40), small]
    mixed = [CountingImage(images[0]), images[1], CountingImage(images[2]),
             CountingImage(images[3]), CountingImage(images[4])]  # fmt: skip
    CountingImage.copies = 0
    batch = thumbnails(mixed)
    assert CountingImage.copies == 2  # one per frame shape, not one per frame
    one_by_one = [thumbnails([image])[0] for image in images]
    assert [t.shape for t in batch] == [(54, 96), (54, 96), (54, 96), (54, 96), (54, 96)]
    assert all(np.array_equal(a, b) for a, b in zip(batch, one_by_one, strict=True))


def test_a_batch_gates_its_frames_as_each_camera_alone_would():
    """`Batch.begin` makes the motion thumbnails of the whole batch at once: each
    camera's gate decides as it does frame by frame."""
    from alprd.pipeline.stream import Batch

    def pipes() -> list[CameraPipeline]:
        return [CameraPipeline(f"c{i}", None, Config(), motion=True) for i in range(3)]  # type: ignore[arg-type]

    class NoSearch:
        def steps(self, *args: object) -> None:
            return None

    batched, alone = pipes(), pipes()
    shifts = [(0, 0, 0), (0, 30, 30), (0, 30, 60), (0, 30, 60)]
    for t, row in enumerate(shifts):
        frames = [
            Frame(f"c{i}", t, t / 10, CountingImage(scene(shift=s))) for i, s in enumerate(row)
        ]
        Batch.begin(NoSearch(), list(zip(batched, frames, strict=True)))  # type: ignore[arg-type]
        for pipe, frame in zip(alone, frames, strict=True):
            pipe._gated(frame)
    assert [p.gated for p in batched] == [p.gated for p in alone] == [3, 2, 1]


# --------------------------------------------------------------------------- batch window


def test_batch_window_takes_at_once_with_nothing_in_flight_or_every_camera_there():
    from alprd.pipeline.lanes import BatchWindow

    w = BatchWindow(0.010)
    assert not w.due(0, 32, False, 0.0)  # no frame: nothing to take
    assert w.due(3, 32, False, 0.0)  # the GPU idle: at once
    assert w.due(32, 32, True, 0.0)  # every camera's frame there: at once
    assert BatchWindow(0.0).due(1, 32, True, 0.0)  # no window: the old behaviour


def test_batch_window_waits_behind_a_batch_in_flight_up_to_the_window():
    from alprd.pipeline.lanes import BatchWindow

    w = BatchWindow(0.010)
    assert not w.due(2, 32, True, 1.000)  # the window opens at the first frame seen
    assert not w.due(9, 32, True, 1.006)
    assert w.due(12, 32, True, 1.010)  # at most the window
    assert not w.due(1, 32, True, 1.011)  # a new window for the next batch
    assert w.due(20, 32, False, 1.012)  # the other batch finished: at once
    assert not w.due(1, 32, True, 1.013)  # ...and the next window starts afresh
    assert not w.due(0, 32, True, 1.100)  # frames gone (a reload): the window closes
    assert not w.due(1, 32, True, 1.101)
    assert w.due(1, 32, True, 1.111)
