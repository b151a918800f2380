"""Plate lists (pure): distances with confusable characters, validity windows,
and which entry decides."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alprd.pipeline.lists import (
    UNKNOWN,
    ListEntry,
    PlateLists,
    Window,
    days_text,
    hours_text,
    parse_days,
    parse_hours,
)
from alprd.plates import plate_distance
from alprd.sinks.lists import read_csv, write_csv

AMS = ZoneInfo("Europe/Amsterdam")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=AMS).timestamp()


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [("AB123", "AB123", 0), ("AB123", "A8123", 0.5), ("O0", "00", 0.5), ("AB123", "AX123", 1),
     ("AB123", "AB1234", 1), ("L417VS", "L417V5", 0.5), ("", "AB", 2)],
)  # fmt: skip
def test_a_confusable_swap_costs_less(a, b, d):
    assert plate_distance(a, b) == d == plate_distance(b, a)


def test_a_window_holds_between_its_dates_on_its_days_and_hours():
    w = Window(at("2026-12-01T00:00"), at("2026-12-31T00:00"), parse_days("mon-fri"),
               parse_hours("07:00-19:00"))  # fmt: skip
    assert w.holds(at("2026-12-07T08:00"), AMS)  # a Monday morning
    assert not w.holds(at("2026-12-07T19:00"), AMS)  # the end is exclusive
    assert not w.holds(at("2026-12-06T08:00"), AMS)  # a Sunday
    assert not w.holds(at("2027-01-04T08:00"), AMS)  # past until
    night = Window(days=parse_days("fri"), hours=parse_hours("22:00-06:00"))
    assert night.holds(at("2026-12-11T23:00"), AMS)  # Friday night
    assert night.holds(at("2026-12-12T05:00"), AMS)  # ... after midnight, still Friday's
    assert not night.holds(at("2026-12-11T05:00"), AMS)  # Friday early: Thursday's night
    assert Window().holds(0.0, AMS)


def test_deny_wins_then_the_closest_entry_and_a_window_that_does_not_hold_is_no_match():
    entries = [
        ListEntry("residents", "allow", "L417VS", "Ann", max_distance=1),
        ListEntry("visitors", "allow", "L417V5", "", max_distance=1),
        ListEntry("blocked", "deny", "AB123CD"),
        ListEntry("night", "allow", "AB123CD", window=Window(hours=(0, 60))),
        ListEntry("staff", "allow", "XY99ZZ", window=Window(hours=parse_hours("07:00-19:00"))),
    ]
    lists = PlateLists(entries, AMS)
    d = lists.decide("L417VS", at("2026-12-07T12:00"))
    assert (d.verdict, d.entry.list, d.distance) == ("allow", "residents", 0.0)
    d = lists.decide("L417V8", at("2026-12-07T12:00"))  # 1 from residents, 1 from visitors
    assert (d.verdict, d.entry.list, d.distance) == ("allow", "residents", 1.0)
    assert lists.decide("AB123CD", at("2026-12-07T00:30")).verdict == "deny"
    assert lists.decide("XY99ZZ", at("2026-12-07T12:00")).verdict == "allow"
    assert lists.decide("XY99ZZ", at("2026-12-07T20:00")) == UNKNOWN
    assert lists.decide("ZZ1", 0.0) == UNKNOWN and PlateLists([], AMS).decide("A", 0) == UNKNOWN


def test_days_and_hours_read_and_write_back():
    assert days_text(parse_days("mon-fri,sun")) == "mon-fri,sun"
    assert parse_days("Saturday,sunday") == {5, 6} and parse_days("fri-mon") == {4, 5, 6, 0}
    assert hours_text(parse_hours("7:05-19:00")) == "07:05-19:00" and parse_hours("") is None
    for bad, say in [("funday", "days"), ("mon-", "days")]:
        with pytest.raises(ValueError, match=say):
            parse_days(bad)
    for bad in ("7-19", "25:00-26:00", "07:00-07:00"):
        with pytest.raises(ValueError, match="hours"):
            parse_hours(bad)


def test_a_csv_reads_and_writes_back_and_a_bad_row_names_its_line():
    text = ("plate,label,from,until,days,hours,distance\n"
            "L417VS,Ann,2026-12-01T00:00+01:00,,mon-fri,07:00-19:00,1\nab-12,,,,,,0\n")  # fmt: skip
    entries = read_csv(text, AMS)
    assert [e.plate for e in entries] == ["L417VS", "AB12"]
    assert entries[0].window.valid_from == at("2026-12-01T00:00") and entries[0].max_distance == 1
    assert write_csv(entries, AMS) == text.replace("ab-12", "AB12")
    for bad, say in [("plate,colour\nAB1,red\n", "unknown columns colour"),
                     ("label\nAnn\n", "the first line must name"),
                     ("plate,distance\nAB1,far\n", "line 2: distance: 'far'"),
                     ("plate,from,until\nAB1,2026-12-02,2026-12-01\n", "line 2: until"),
                     ("plate\n--\n", "line 2: plate")]:  # fmt: skip
        with pytest.raises(ValueError, match=say):
            read_csv(bad, AMS)
