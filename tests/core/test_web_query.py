"""The web search's query: what a request's parameters become in SQL, and what it
refuses (pure: no database)."""

from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from alprd.web.store import BadQuery, Search, normal_plate, parse_time, where


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
    # one edit leaves a trigram of a 6-character plate (4 trigrams, 3 touched)
    clause, args = where(Search(plate="L417VS", fuzzy=1))
    assert "MATCH ?" in clause and args[0] == '"17V" OR "417" OR "7VS" OR "L41"'
    # two edits can touch all 4: the index cannot say, every row is read
    assert "reads_trigram" not in where(Search(plate="L417VS", fuzzy=2))[0]


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
