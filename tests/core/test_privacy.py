"""The keyed plate hash and what it hides (`privacy.hash_plates`)."""

from __future__ import annotations

import stat

import pytest

from alprd.hashing import make_key, plate_hash, read_key
from alprd.pipeline.types import PlateEvent, TextVote
from alprd.settings.outputs import PrivacyConfig
from alprd.sinks.privacy import Concealer
from alprd.web.store import Search, where


def event(plate: str, known: str | None = None) -> PlateEvent:
    return PlateEvent(
        camera="gate", plate=plate, confidence=0.9, char_confidences=(0.9,) * len(plate),
        first_seen=0.0, last_seen=1.0, first_frame=0, last_frame=9, plate_box=(0, 0, 9, 9),
        vehicle_box=None, vehicle_class="car", reads=4, track_id=1, known_label=known,
        texts=(TextVote(plate, 3, 0.95), TextVote(plate[:-1] + "8", 1, 0.5)),
    )  # fmt: skip


def test_the_hash_is_keyed_stable_and_never_a_plate():
    a, b = b"k" * 32, b"j" * 32
    assert plate_hash(a, "L417VS") == plate_hash(a, "L417VS")
    assert plate_hash(a, "L417VS") != plate_hash(b, "L417VS") != plate_hash(b, "L417V5")
    h = plate_hash(a, "L417VS")
    assert h.startswith("#") and len(h) == 17 and not h[1:].isupper()


def test_the_key_is_made_once_private_and_a_bad_one_is_refused(tmp_path):
    path = tmp_path / "state" / "plate-key"
    assert read_key(path) is None
    key = make_key(path)
    assert len(key) == 32 and make_key(path) == key == read_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("not hex\n")
    with pytest.raises(ValueError, match="plate-key: not a plate-hash key"):
        read_key(path)


def test_unknown_plates_and_their_reads_are_hashed_known_ones_kept(tmp_path):
    conceal = Concealer(b"k" * 32)
    hidden = conceal(event("AB123CD"))
    assert hidden.plate == plate_hash(b"k" * 32, "AB123CD")
    assert [t.text for t in hidden.texts] == [conceal.hash("AB123CD"), conceal.hash("AB123C8")]
    assert [t.reads for t in hidden.texts] == [3, 1]
    assert conceal(event("AB123CD", known="staff")).plate == "AB123CD"
    off = PrivacyConfig(key_file=tmp_path / "key")
    assert Concealer.for_daemon(off) is None and not (tmp_path / "key").exists()
    on = PrivacyConfig(hash_plates=True, key_file=tmp_path / "key")
    assert Concealer.for_reader(on) is None  # no key yet: nothing was hashed
    made = Concealer.for_daemon(on)
    assert made is not None and Concealer.for_reader(on).key == made.key


def test_an_exact_search_finds_the_plate_or_its_hash():
    assert where(Search(plate="AB123CD", hashed="#0123456789abcdef")) == (
        "plate IN (?, ?)", ["AB123CD", "#0123456789abcdef"],
    )  # fmt: skip
