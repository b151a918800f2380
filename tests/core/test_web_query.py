"""The web search's query: what a request's parameters become in SQL, and what it
refuses (pure: no database)."""

import random
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from alprd.plates import levenshtein
from alprd.web.store import BadQuery, Search, normal_plate, parse_time, pieces, where


def test_a_plate_is_exact_a_pattern_globs_and_fuzzy_allows_edits():
    assert where(Search(plate="l41-7vs")) == ("plate = ?", ["L417VS"])
    assert where(Search(plate="L41*"), indexed=False) == ("plate GLOB ?", ["L41*"])
    clause, args = where(Search(plate="L417VS", fuzzy=1), indexed=False)
    assert "edit_distance(plate, ?) <= ?" in clause and args == [5, 7, "L417VS", 1]
    assert where(Search()) == ("1", [])


def test_the_trigram_index_narrows_what_it_can_and_only_that():
    clause, args = where(Search(plate="*17V*"))
    assert "reads_trigram WHERE plate GLOB ?" in clause and args == ["*17V*", "*17V*"]
    assert "reads_trigram" not in where(Search(plate="L4*"))[0]  # no 3 in a row
    # one edit leaves one half of a 6-character plate whole
    clause, args = where(Search(plate="L417VS", fuzzy=1))
    assert "MATCH ?" in clause and args[0] == '"L41" OR "7VS"'
    # two edits need three runs of three: too short, every row is read
    assert "reads_trigram" not in where(Search(plate="L417VS", fuzzy=2))[0]
    assert where(Search(plate="AB123CDE9", fuzzy=2))[1][0] == '"AB1" OR "23C" OR "DE9"'


def test_a_plate_within_k_edits_holds_one_of_the_k_plus_1_pieces_whole():
    rng = random.Random(5)
    chars = "ABC0123"
    for _ in range(3000):
        plate = "".join(rng.choice(chars) for _ in range(rng.randint(6, 10)))
        k = rng.randint(1, 2)
        other = list(plate)
        for _ in range(k):  # a substitution, an insertion or a deletion
            at, op = rng.randrange(len(other)), rng.choice("sid")
            if op == "i":
                other.insert(at, rng.choice(chars))
            elif op == "d":
                del other[at]
            else:
                other[at] = rng.choice(chars)
        stored = "".join(other)
        assert levenshtein(plate, stored) <= k
        assert any(p in stored for p in pieces(plate, k)), (plate, stored, k)


def test_every_filter_narrows_and_a_cursor_continues_after_the_last_row():
    clause, args = where(Search(camera="gate", known="staff", vehicle="car", since=10.0,
                                until=20.0, after="15.5_42"))  # fmt: skip
    cursor = "(first_seen < ? OR (first_seen = ? AND rowid < ?))"
    for part in ("camera = ?", "known_label = ?", "json_extract", "first_seen >= ?",
                 "first_seen < ?", cursor):  # fmt: skip
        assert part in clause
    assert args == ["gate", "staff", "car", 10.0, 20.0, 15.5, 15.5, 42]


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (Search(plate="A" * 17), "plate: letters, digits, \\* and \\?"),
        (Search(plate="L4*", fuzzy=1), "fuzzy: only with a plate without"),
        (Search(after="nonsense"), "after: not a cursor"),
        (Search(after="inf_3"), "after: not a cursor"),
    ],
)
def test_what_cannot_be_searched_is_refused_naming_the_parameter(search, message):
    with pytest.raises(BadQuery, match=message):
        where(search)


def test_plates_and_times_as_people_type_them():
    assert normal_plate(" ab-12 cd ") == "AB12CD"
    assert normal_plate("<script>") == "SCRIPT"  # never markup: letters, digits, * and ?
    assert parse_time("2h", now=10_000.0) == 10_000.0 - 7200
    lisbon = ZoneInfo("Europe/Lisbon")  # UTC+0 in winter, +1 in summer
    assert parse_time("2026-07-01T12:00", 0, lisbon) == parse_time("2026-07-01T11:00Z", 0, UTC)
    with pytest.raises(BadQuery, match="expected 30m, 2h, 7d"):
        parse_time("last tuesday", 0)
