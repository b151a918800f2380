"""Plate lists (pure): named lists of plates that may pass (``allow``) or may not
(``deny``), each entry with an optional label, a validity window (from/until,
weekdays, hours of the day in the site's time zone) and a match tolerance (an
edit distance in which a 0/O-style confusion counts less, `plates.plate_distance`).

`PlateLists.decide` gives a plate's decision at a time: ``deny`` if an entry of a
deny list matches (a deny entry wins over an allow entry), else ``allow`` if one
of an allow list does, else ``unknown``; with the matching entry (the closest)
and its distance. `alprd.sinks.lists` stores the entries; the daemon takes a
change up while it runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal

from alprd.plates import plate_distance

Kind = Literal["allow", "deny"]
Verdict = Literal["allow", "deny", "unknown"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY = {**{d: i for i, d in enumerate(DAYS)}, **{d: i for i, d in enumerate(_FULL)}}
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Window:
    """When an entry holds. Every part left out holds always."""

    valid_from: float | None = None  # epoch seconds, inclusive
    valid_until: float | None = None  # epoch seconds, exclusive
    days: frozenset[int] = frozenset()  # weekdays, 0 = Monday; empty: every day
    #: minutes of the day, start inclusive and end exclusive; an end before the
    #: start runs over midnight (22:00-06:00)
    hours: tuple[int, int] | None = None

    def holds(self, when: float, zone: tzinfo) -> bool:
        if self.valid_from is not None and when < self.valid_from:
            return False
        if self.valid_until is not None and when >= self.valid_until:
            return False
        if not self.days and self.hours is None:
            return True
        local = datetime.fromtimestamp(when, zone)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.hours is not None:
            start, end = self.hours
            if start > end and minute < end:  # the night's part after midnight
                day = (day - 1) % 7  # belongs to the evening it began on
            inside = start <= minute < end if start <= end else minute >= start or minute < end
            if not inside:
                return False
        return not self.days or day in self.days


@dataclass(frozen=True)
class ListEntry:
    list: str
    kind: Kind
    plate: str
    label: str = ""
    window: Window = field(default_factory=Window)
    max_distance: float = 0.0


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    entry: ListEntry | None = None
    distance: float = 0.0


UNKNOWN = Decision("unknown")


class PlateLists:
    """A fixed set of entries, asked by plate and time (safe to share between
    threads: never changed; a change of the lists is a new `PlateLists`)."""

    def __init__(
        self, entries: Iterable[ListEntry], zone: tzinfo, confusion_cost: float = 0.5
    ) -> None:
        self.entries = tuple(entries)
        self.zone = zone
        self.confusion_cost = confusion_cost
        self._exact: dict[str, list[ListEntry]] = {}
        for e in self.entries:
            self._exact.setdefault(e.plate, []).append(e)
        self._fuzzy = [e for e in self.entries if e.max_distance > 0]

    def __len__(self) -> int:
        return len(self.entries)

    def decide(self, plate: str, when: float) -> Decision:
        if not self.entries or not plate:
            return UNKNOWN
        found: list[tuple[float, ListEntry]] = [(0.0, e) for e in self._exact.get(plate, [])]
        for e in self._fuzzy:
            if e.plate != plate and abs(len(e.plate) - len(plate)) <= e.max_distance:
                d = plate_distance(plate, e.plate, self.confusion_cost)
                if d <= e.max_distance:
                    found.append((d, e))
        held = [(d, e) for d, e in found if e.window.holds(when, self.zone)]
        for kind in ("deny", "allow"):
            mine = [(d, e) for d, e in held if e.kind == kind]
            if mine:
                d, e = min(mine, key=lambda m: (m[0], m[1].list, m[1].plate))
                return Decision(kind, e, d)
        return UNKNOWN


def parse_days(text: str) -> frozenset[int]:
    """``mon-fri``, ``sat,sun``, ``mon,wed-fri`` -> weekdays (0 = Monday); "" -> every day."""
    out: set[int] = set()
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        first, dash, last = part.partition("-")
        try:
            a, b = _DAY[first.strip()], _DAY[(last if dash else first).strip()]
        except KeyError:
            raise ValueError(
                f"days: {part!r} is not a weekday or range (mon-fri, sat,sun)"
            ) from None
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


def parse_hours(text: str) -> tuple[int, int] | None:
    """``07:00-19:00`` (or ``22:00-06:00`` over midnight) -> minutes of the day; "" -> None."""
    if not text.strip():
        return None
    m = _HOURS.match(text.strip())
    if not m:
        raise ValueError(f"hours: {text!r} is not HH:MM-HH:MM (e.g. 07:00-19:00)")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
        raise ValueError(f"hours: {text!r} is not a range of the day")
    return min(h1 * 60 + m1, 1440), min(h2 * 60 + m2, 1440)


def days_text(days: frozenset[int]) -> str:
    """Weekdays as `parse_days` reads them, runs as ranges: ``mon-fri,sun``."""
    runs: list[list[int]] = []
    for d in sorted(days):
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(DAYS[r[0]] if len(r) == 1 else f"{DAYS[r[0]]}-{DAYS[r[-1]]}" for r in runs)


def hours_text(hours: tuple[int, int] | None) -> str:
    if hours is None:
        return ""
    (a, b) = hours
    return f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}"
