r"""Plates (pure; standard library only; the ground floor, with config, ops and
log): the characters of a registration, the plate-format language, the edit
distance, and the built-in library of licence-plate formats.

The format language: a sequence of character classes (``[A-Z]``, ``[0-9]``,
``\d``, ``.``, a letter or digit), each optionally followed by a count ``{n}``
or, in the library and `expand`, ``{m,n}``. `parse_format` turns a fixed-length
pattern into one allowed set per position (what the decoder in
`alprd.pipeline.rules` uses); `expand` turns a variable one into the fixed-length
patterns it covers. Both read patterns with the same tokenizer.

The library: per region (a lower-case ISO-like code: ``de``, ``gb``, ``us-ca``,
``br``, ``in``) the registration's formats as fixed-length sequences of
character classes (``[A-Z]{3}[0-9]{4}``).
Only the registration is described: A-Z and 0-9, no separators, no country band
letters, German umlauts as their base letter. Series of variable length are
written with ``{m,n}`` counts and expanded here into every fixed length they
allow (``[A-Z]{1,2}[0-9]{1,4}`` gives 8 patterns), capped where a country caps
the whole (Germany: 8 characters). A class narrower than ``[A-Z]`` is used only
where the country's rule is certain (Dutch series without vowels, Italian
without I, O, Q, U, digits that never start with 0, ...). Personalised (vanity),
diplomatic and other special plates are not described.

`GROUPS` names sets of regions: ``eu`` (every European country here, EU member
or not), ``uk`` (``gb``), ``us`` (the series common to many states, region
``us``, and every state), ``world`` (all).
`resolve` turns the names a site configured into the patterns it allows.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence

LETTERS = string.ascii_uppercase
DIGITS = string.digits
#: The characters of a registration: what every recogniser, format and label uses.
CHARSET = LETTERS + DIGITS

#: One position of a fixed-length format: the characters allowed there.
Format = tuple[frozenset[str], ...]

_PART = re.compile(r"(\[[^\]]+\]|\\[dw]|\.|[A-Za-z0-9])(?:\{(\d+)(?:,(\d+))?\})?")
_HINT = "use character classes like [A-Z], [0-9], \\d, . or letters/digits, each optionally {n}"


def _parts(pattern: str, hint: str = "") -> Iterator[tuple[str, int, int, int]]:
    """The pattern's classes: (class, least count, most count, where it starts).
    ValueError at the first thing that is not a class with an optional count."""
    pos = 0
    while pos < len(pattern):
        m = _PART.match(pattern, pos)
        if not m:
            raise ValueError(f"format {pattern!r}: unsupported at {pattern[pos:]!r}{hint}")
        lo = int(m.group(2)) if m.group(2) else 1
        hi = int(m.group(3)) if m.group(3) else lo
        yield m.group(1), lo, hi, pos
        pos = m.end()


def allowed(cls: str) -> frozenset[str]:
    """The characters one class allows: ``[A-HJ-NP-Z]``, ``\\d``, ``.``, ``A``."""
    if cls == ".":
        return frozenset(CHARSET)
    if cls in ("\\d", "\\w"):
        return frozenset(DIGITS if cls == "\\d" else CHARSET)
    if not cls.startswith("["):
        return frozenset(cls.upper())
    spec, chars = cls[1:-1], set()
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            chars |= {chr(c) for c in range(ord(spec[i]), ord(spec[i + 2]) + 1)}
            i += 3
        else:
            chars.add(spec[i])
            i += 1
    return frozenset(chars)


def parse_format(pattern: str) -> Format:
    """``[A-Z]{3}[0-9]{4}`` -> one allowed set per position. ValueError if the
    pattern is not a fixed-length sequence of classes."""
    out: list[frozenset[str]] = []
    for cls, lo, hi, pos in _parts(pattern, f"; {_HINT}"):
        if hi != lo:  # a range of counts has no fixed length
            count = pattern.index("{", pos)
            raise ValueError(f"format {pattern!r}: unsupported at {pattern[count:]!r}; {_HINT}")
        out += [allowed(cls)] * lo
    if not out:
        raise ValueError(f"format {pattern!r} is empty")
    return tuple(out)


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


#: Characters a camera or a person confuses: a swap within one group costs
#: `plate_distance`'s ``confusion_cost`` instead of 1.
CONFUSABLE: tuple[str, ...] = ("0OQD", "1I", "2Z", "5S", "6G", "8B")
_GROUP_OF = {c: i for i, group in enumerate(CONFUSABLE) for c in group}


def plate_distance(a: str, b: str, confusion_cost: float = 0.5) -> float:
    """The edit distance between two plates with a substitution between confusable
    characters (`CONFUSABLE`: 0/O, 1/I, 8/B ...) costing `confusion_cost`."""
    prev = [float(j) for j in range(len(b) + 1)]
    for i, ca in enumerate(a, start=1):
        cur = [float(i)]
        ga = _GROUP_OF.get(ca, -1)
        for j, cb in enumerate(b, start=1):
            if ca == cb:
                swap = 0.0
            else:
                swap = confusion_cost if ga >= 0 and ga == _GROUP_OF.get(cb, -2) else 1.0
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + swap))
        prev = cur
    return prev[-1]


def expand(pattern: str, at_most: int | None = None) -> tuple[str, ...]:
    """``[A-Z]{1,2}[0-9]{1,3}`` -> the fixed-length patterns it covers, each at
    most `at_most` characters long, in order, without repeats; runs of one
    class are merged (``[A-Z]{1}[A-Z]{2}`` -> ``[A-Z]{3}``). ValueError if the
    pattern is not a sequence of classes with optional ``{n}`` / ``{m,n}`` counts."""
    parts: list[tuple[str, range]] = []
    for cls, lo, hi, _ in _parts(pattern):
        if hi < lo:
            raise ValueError(f"format {pattern!r}: count {{{lo},{hi}}} is empty")
        parts.append((cls, range(lo, hi + 1)))
    out: dict[str, None] = {}
    for counts in itertools.product(*(r for _, r in parts)):
        if not sum(counts) or (at_most is not None and sum(counts) > at_most):
            continue
        runs: list[list[str | int]] = []
        for (cls, _), n in zip(parts, counts, strict=True):
            if not n:
                continue
            if runs and runs[-1][0] == cls:
                runs[-1][1] = int(runs[-1][1]) + n
            else:
                runs.append([cls, n])
        out["".join(f"{c}{{{n}}}" if n != 1 else str(c) for c, n in runs)] = None
    return tuple(out)


def _x(*patterns: str, at_most: int | None = None) -> tuple[str, ...]:
    """Every fixed-length pattern of `patterns`, without repeats."""
    out: dict[str, None] = {}
    for p in patterns:
        out.update(dict.fromkeys(expand(p, at_most)))
    return tuple(out)


_L, _N, _D = "[A-Z]", "[0-9]", "[1-9]"  # letter, digit, digit other than 0
_NL = "[B-DF-HJ-NP-TV-Z]"  # Dutch series since side code 4: no vowels
_FR = "[A-HJ-NP-TV-Z]"  # French SIV series: no I, O, U
_IT = "[A-HJ-NPR-TV-Z]"  # Italian series: no I, O, Q, U
_ES = "[BCDFGHJKLMNPRSTVWXYZ]"  # Spanish series since 2000: no vowels, Q or Ñ
_SE = "[A-HJ-PR-UW-Z]"  # Swedish letters: no I, Q, V
_GR = "[ABEHIKMNOPTXYZ]"  # Greek letters that look Latin
_BG = "[ABCEHKMOPTXY]"  # Bulgarian letters that look Latin
_TR = "[A-PR-VYZ]"  # Turkish plates: no Q, W, X
_PL = "[ACE-HJ-NP-Y]"  # Polish series: no B, D, I, O, Z
_GB = "[A-HJ-PR-Z]"  # British current series: no I, Q
_IN = "[A-HJ-NP-Z]"  # Indian series letters: no I, O

#: Region -> its fixed-length patterns (see the module's docstring).
LIBRARY: dict[str, tuple[str, ...]] = {
    # ---------------------------------------------------------------- Europe
    # Austria: district (1-2 letters), then a number and 1-3 letters
    "at": _x(f"{_L}{{1,2}}{_D}{_N}{{0,4}}{_L}{{1,3}}", at_most=8),
    # Belgium: 1-ABC-123 (2010), 123-ABC (2008), ABC-123 (1973)
    "be": (f"{_D}{_L}{{3}}{_N}{{3}}", f"{_N}{{3}}{_L}{{3}}", f"{_L}{{3}}{_N}{{3}}"),
    # Bulgaria: province (1-2 letters), 4 digits, 2 letters
    "bg": _x(f"{_BG}{{1,2}}{_N}{{4}}{_BG}{{2}}"),
    # Switzerland: canton (AG AI AR BE BL BS FR GE GL GR JU LU NE NW OW SG SH SO SZ
    # TG TI UR VD VS ZG ZH), then 1-6 digits
    "ch": _x(f"[ABFGJLNOSTUVZ][DEGHILORSUWZ]{_D}{_N}{{0,5}}"),
    # Cyprus: ABC 123
    "cy": (f"{_L}{{3}}{_N}{{3}}",),
    # Czechia: 1A2 3456 / 1AB 2345 (2001: region letter second; no G, O, Q, W),
    # motorcycles 1A 2345 (two lines), AB 12-34 / ABC 12-34 (before)
    "cz": (
        f"{_D}[ABCEHJKLMPSTUZ][0-9A-FH-NPR-VX-Z]{_N}{{4}}",
        f"{_D}[ABCEHJKLMPSTUZ]{_N}{{4}}",
        *_x(f"{_L}{{2,3}}{_N}{{4}}"),
    ),
    # Germany: district (1-3 letters), 1-2 letters, 1-4 digits, 8 characters in
    # all; E (electric) or H (historic) after the digits counts among the 8;
    # short-term (03, 04) and red (06 dealers, 07 classics) plates: district, then
    # the series number and 1-4 digits
    "de": _x(
        f"{_L}{{1,3}}{_L}{{1,2}}{_D}{_N}{{0,3}}",
        f"{_L}{{1,3}}{_L}{{1,2}}{_D}{_N}{{0,3}}[EH]",
        f"{_L}{{1,3}}0[3467]{_N}{{1,4}}",
        at_most=8,
    ),
    # Denmark: AB 12 345
    "dk": (f"{_L}{{2}}{_D}{_N}{{4}}",),
    # Estonia: 123 ABC
    "ee": (f"{_N}{{3}}{_L}{{3}}",),
    # Spain: 1234 BCD (2000), provincial M 1234 AB (before)
    "es": _x(f"{_N}{{4}}{_ES}{{3}}", f"{_L}{{1,2}}{_N}{{4}}{_L}{{1,2}}"),
    # Finland: ABC-123 (2-3 letters, 1-3 digits)
    "fi": _x(f"{_L}{{2,3}}{_D}{_N}{{0,2}}"),
    # France: AB-123-CD (SIV, 2009); 1234 AB 75 (FNI: up to 4 digits and up to 3
    # letters, 6 in all, then the department: 2 digits, 2A/2B, or 971-976)
    "fr": (
        f"{_FR}{{2}}{_N}{{3}}{_FR}{{2}}",
        *_x(f"{_N}{{1,4}}{_L}{{1,3}}{_N}{{2}}", f"{_N}{{1,4}}{_L}{{1,3}}2[AB]", at_most=8),
        *_x(f"{_N}{{1,4}}{_L}{{1,3}}97[1-6]", at_most=9),
    ),
    # Great Britain: AB12 CDE (2001), A123 BCD (prefix, 1983), ABC 123D (suffix,
    # 1963), dateless ABC 1234 / 1234 ABC (also Northern Ireland)
    "gb": (
        f"{_GB}{{2}}{_N}{{2}}{_GB}{{3}}",
        *_x(f"{_L}{_D}{_N}{{0,2}}{_L}{{3}}", f"{_L}{{3}}{_D}{_N}{{0,2}}{_L}"),
        *_x(f"{_L}{{1,3}}{_D}{_N}{{0,3}}", f"{_D}{_N}{{0,3}}{_L}{{1,3}}"),
    ),
    # Greece: ABC-1234 (cars), ABC-123 (motorcycles)
    "gr": (f"{_GR}{{3}}{_D}{_N}{{3}}", f"{_GR}{{3}}{_D}{_N}{{2}}"),
    # Croatia: city (2 letters), 3-4 digits, 1-2 letters
    "hr": _x(f"{_L}{{2}}{_N}{{3,4}}{_L}{{1,2}}"),
    # Hungary: AA AA-123 (2022), ABC-123 (before)
    "hu": (f"{_L}{{4}}{_N}{{3}}", f"{_L}{{3}}{_N}{{3}}"),
    # Ireland: 12-D-12345 / 131-D-12345 (year, 1 or 2 for the half since 2013,
    # county in 1-2 letters, then 1-6 digits)
    "ie": _x(f"{_N}{{2}}[12]{{0,1}}{_L}{{1,2}}{_N}{{1,6}}"),
    # Iceland: AB 123, AB C12
    "is": (f"{_L}{{2}}[A-Z0-9]{_N}{{2}}",),
    # Italy: AB 123 CD (1994), motorcycles AB 12345; province and number before
    "it": (
        f"{_IT}{{2}}{_N}{{3}}{_IT}{{2}}",
        f"{_IT}{{2}}{_N}{{5}}",
        f"{_L}{{2}}{_N}{{6}}",
    ),
    # Lithuania: ABC 123
    "lt": (f"{_L}{{3}}{_N}{{3}}",),
    # Luxembourg: 1-2 letters and 3-4 digits, or (older) a number
    "lu": _x(f"{_L}{{1,2}}{_N}{{3,4}}", f"{_D}{_N}{{3,4}}"),
    # Latvia: AB-1234 (1-4 digits)
    "lv": _x(f"{_L}{{2}}{_D}{_N}{{0,3}}"),
    # Malta: ABC 123
    "mt": (f"{_L}{{3}}{_N}{{3}}",),
    # Netherlands: the side codes 1-14; without vowels since side code 4
    "nl": (
        f"{_L}{{2}}{_N}{{4}}",  # 1: AB-12-34
        f"{_N}{{4}}{_L}{{2}}",  # 2: 12-34-AB
        f"{_N}{{2}}{_L}{{2}}{_N}{{2}}",  # 3: 12-AB-34
        f"{_NL}{{2}}{_N}{{2}}{_NL}{{2}}",  # 4: AB-12-CD
        f"{_NL}{{4}}{_N}{{2}}",  # 5: AB-CD-12
        f"{_N}{{2}}{_NL}{{4}}",  # 6: 12-AB-CD
        f"{_N}{{2}}{_NL}{{3}}{_N}",  # 7: 12-ABC-3
        f"{_N}{_NL}{{3}}{_N}{{2}}",  # 8: 1-ABC-23
        f"{_NL}{{2}}{_N}{{3}}{_NL}",  # 9: AB-123-C
        f"{_NL}{_N}{{3}}{_NL}{{2}}",  # 10: A-123-BC
        f"{_NL}{{3}}{_N}{{2}}{_NL}",  # 11: ABC-12-D
        f"{_NL}{_N}{{2}}{_NL}{{3}}",  # 12: A-12-BCD
        f"{_N}{_NL}{{2}}{_N}{{3}}",  # 13: 1-AB-234
        f"{_N}{{3}}{_NL}{{2}}{_N}",  # 14: 123-AB-4
    ),
    # Norway: AB 12345 (AB 1234 for some vehicle kinds)
    "no": _x(f"{_L}{{2}}{_D}{_N}{{3,4}}"),
    # Poland: voivodeship and county (2-3 letters), then the series (no B, D, I,
    # O, Z); after a 2-letter county the series starts with a digit
    "pl": (
        f"{_L}{{2}}{_N}{{5}}",
        f"{_L}{{2}}{_N}{{4}}{_PL}",
        f"{_L}{{2}}{_N}{{3}}{_PL}{{2}}",
        f"{_L}{{2}}{_N}{_PL}{_N}{{3}}",
        f"{_L}{{2}}{_N}{_PL}{{2}}{_N}{{2}}",
        f"{_L}{{3}}{_PL}{_N}{{3}}",
        f"{_L}{{3}}{_N}{{2}}{_PL}{{2}}",
        f"{_L}{{3}}{_N}{_PL}{_N}{{2}}",
        f"{_L}{{3}}{_N}{{2}}{_PL}{_N}",
        f"{_L}{{3}}{_N}{_PL}{{2}}{_N}",
        f"{_L}{{3}}{_PL}{{2}}{_N}{{2}}",
        f"{_L}{{3}}{_N}{{5}}",
        f"{_L}{{3}}{_N}{{4}}{_PL}",
        f"{_L}{{3}}{_N}{{3}}{_PL}{{2}}",
        f"{_L}{{3}}{_PL}{_N}{{4}}",
        f"{_L}{{2}}{_N}{{4}}",  # two lines: a 2-letter county and 4 characters
        f"{_L}{{2}}{_N}{{3}}{_PL}",
    ),
    # Portugal: AB-12-CD (2020), 12-AB-34 (2005), 12-34-AB (1992), AB-12-34 (before)
    "pt": (
        f"{_L}{{2}}{_N}{{2}}{_L}{{2}}",
        f"{_N}{{2}}{_L}{{2}}{_N}{{2}}",
        f"{_N}{{4}}{_L}{{2}}",
        f"{_L}{{2}}{_N}{{4}}",
    ),
    # Romania: county (2 letters), 2 digits, 3 letters; Bucharest B, 2-3 digits
    "ro": _x(f"{_L}{{2}}{_N}{{2}}{_L}{{3}}", f"B{_N}{{2,3}}{_L}{{3}}"),
    # Sweden: ABC 123, ABC 12D (2019)
    "se": (f"{_SE}{{3}}{_N}{{2}}[0-9A-HJ-NPR-UW-Z]",),
    # Slovenia: area (CE GO KK KP KR LJ MB MS NM PO SG), then the series
    "si": tuple(
        f"[CGKLMNPS][BEGJKMOPRS]{s}"
        for s in (
            f"{_L}{{2}}{_N}{{3}}",
            f"{_L}{_N}{{4}}",
            f"{_L}{_N}{{3}}{_L}",
            f"{_N}{{4}}{_L}",
            f"{_N}{{3}}{_L}{{2}}",
        )
    ),
    # Slovakia: district (2 letters) 123 AB; the same shape without district (2023)
    "sk": (f"{_L}{{2}}{_N}{{3}}{_L}{{2}}",),
    # Turkey: province 01-81, then 1 letter + 4 digits, 2 letters + 3-4 digits,
    # or 3 letters + 2-3 digits
    "tr": _x(
        f"[0-8]{_N}{_TR}{_N}{{4}}",
        f"[0-8]{_N}{_TR}{{2}}{_N}{{3,4}}",
        f"[0-8]{_N}{_TR}{{3}}{_N}{{2,3}}",
    ),
    # ---------------------------------------------------------------- Americas
    # Brazil: grey/red ABC-1234 and Mercosur ABC1D23
    "br": (f"{_L}{{3}}{_N}{{4}}", f"{_L}{{3}}{_N}{_L}{_N}{{2}}"),
    # United States, generic: the sequential series many states share
    "us": (
        f"{_L}{{3}}{_N}{{4}}",
        f"{_L}{{3}}{_N}{{3}}",
        f"{_N}{{3}}{_L}{{3}}",
        f"{_N}{_L}{{3}}{_N}{{3}}",
        f"{_N}{_L}{{2}}{_N}{{4}}",
        f"{_L}{{2}}{_N}{{4}}",
        f"{_L}{{2}}{_N}{{5}}",
        f"{_N}{{4}}{_L}{{2}}",
    ),
    # ... and the states whose standard series (current or recent) is strict
    "us-ak": (f"{_L}{{3}}{_N}{{3}}",),
    "us-az": (f"{_L}{{3}}{_N}{{4}}",),
    "us-ca": (f"{_N}{_L}{{3}}{_N}{{3}}",),
    "us-fl": (f"{_L}{{4}}{_N}{{2}}", f"{_L}{_N}{{3}}{_L}{{2}}"),
    "us-dc": (f"{_L}{{2}}{_N}{{4}}",),
    "us-de": _x(f"{_D}{_N}{{0,5}}"),
    "us-ga": (f"{_L}{{3}}{_N}{{4}}",),
    "us-hi": (f"{_L}{{3}}{_N}{{3}}",),
    "us-ia": (f"{_L}{{3}}{_N}{{3}}", f"{_N}{{3}}{_L}{{3}}"),
    "us-il": (f"{_L}{{2}}{_N}{{5}}", f"{_L}{_N}{{6}}"),
    "us-ks": (f"{_N}{{3}}{_L}{{3}}",),
    "us-la": (f"{_L}{{3}}{_N}{{3}}",),
    "us-md": (f"{_N}{_L}{{2}}{_N}{{4}}",),
    "us-me": (f"{_N}{{4}}{_L}{{2}}",),
    "us-mi": (f"{_L}{{3}}{_N}{{4}}",),
    "us-mn": (f"{_N}{{3}}{_L}{{3}}", f"{_L}{{3}}{_N}{{3}}"),
    "us-mo": (f"{_L}{{2}}{_N}{_L}{_N}{_L}",),
    "us-nc": (f"{_L}{{3}}{_N}{{4}}",),
    "us-nd": (f"{_N}{{3}}{_L}{{3}}", f"{_L}{{3}}{_N}{{3}}"),
    "us-nh": (f"{_N}{{7}}",),
    "us-nj": (f"{_L}{_N}{{2}}{_L}{{3}}", f"{_L}{{3}}{_N}{{2}}{_L}"),
    "us-nm": (f"{_L}{{3}}{_N}{{3}}",),
    "us-ny": (f"{_L}{{3}}{_N}{{4}}",),
    "us-oh": (f"{_L}{{3}}{_N}{{4}}",),
    "us-ok": (f"{_L}{{3}}{_N}{{3}}",),
    "us-or": (f"{_N}{{3}}{_L}{{3}}", f"{_L}{{3}}{_N}{{3}}"),
    "us-pa": (f"{_L}{{3}}{_N}{{4}}",),
    "us-ri": (f"{_L}{{2}}{_N}{{3}}", f"{_N}{{6}}"),
    "us-sc": (f"{_L}{{3}}{_N}{{3}}",),
    "us-tx": (f"{_L}{{3}}{_N}{{4}}", f"{_L}{{2}}{_N}{_L}{_N}{{3}}"),
    "us-ut": (f"{_L}{_N}{{3}}{_L}{{2}}", f"{_N}{{3}}{_L}{{3}}"),
    "us-va": (f"{_L}{{3}}{_N}{{4}}",),
    "us-vt": (f"{_L}{{3}}{_N}{{3}}",),
    "us-wa": (f"{_L}{{3}}{_N}{{4}}", f"{_N}{{3}}{_L}{{3}}"),
    "us-wi": (f"{_L}{{3}}{_N}{{4}}", f"{_N}{{3}}{_L}{{3}}"),
    # Wyoming: county number (1-23), then the vehicle's number
    "us-wy": _x(f"{_D}{_N}{{0,1}}{_N}{{1,5}}"),
    # ---------------------------------------------------------------- Asia
    # India: state (2 letters), district (1-2 digits), series (0-3 letters, no I
    # or O), number (4 digits); Bharat series 22 BH 1234 AB
    "in": (
        *_x(f"[ABCDGHJKLMNOPRSTUW]{_L}{_N}{{1,2}}{_IN}{{0,3}}{_N}{{4}}"),
        *_x(f"{_N}{{2}}BH{_N}{{4}}{_IN}{{1,2}}"),
    ),
}

_EUROPE = (
    "at", "be", "bg", "ch", "cy", "cz", "de", "dk", "ee", "es", "fi", "fr", "gb", "gr",
    "hr", "hu", "ie", "is", "it", "lt", "lu", "lv", "mt", "nl", "no", "pl", "pt", "ro",
    "se", "si", "sk", "tr",
)  # fmt: skip

#: Group name -> the regions it stands for (``world``: every region, including
#: those a site defines in [plates.formats]).
GROUPS: dict[str, tuple[str, ...]] = {
    "eu": _EUROPE,
    "uk": ("gb",),
    "us": tuple(r for r in LIBRARY if r == "us" or r.startswith("us-")),
    "world": tuple(LIBRARY),
}


def names(extra: Iterable[str] = ()) -> list[str]:
    """Every name `resolve` accepts, sorted: the library's regions, the groups and
    the site's own regions `extra`."""
    return sorted({*LIBRARY, *GROUPS, *extra})


def unknown(wanted: Iterable[str], extra: Iterable[str] = ()) -> str:
    """An empty string when `resolve` knows every name in `wanted`; else what is
    wrong and what is allowed, for an error message."""
    known = set(names(extra))
    missing = [n for n in wanted if n not in known]
    if not missing:
        return ""
    regions = sorted({*LIBRARY, *extra} - set(GROUPS))
    return (
        f"unknown {', '.join(repr(m) for m in missing)}; use a region ({', '.join(regions)}), "
        f"a group ({', '.join(sorted(GROUPS))}), or define it in [plates.formats]"
    )


def resolve(
    wanted: Sequence[str], extra: Mapping[str, Sequence[str]] | None = None
) -> dict[str, tuple[str, ...]]:
    """Region -> patterns for the names a site allows (`wanted`, groups expanded),
    in order. `extra` ([plates.formats]) adds regions, or replaces a region or
    group of the same name; ``world`` includes them. ValueError naming the unknown
    names and the known ones."""
    extra = extra or {}
    problem = unknown(wanted, extra)
    if problem:
        raise ValueError(f"regions: {problem}")
    table: dict[str, tuple[str, ...]] = {**LIBRARY, **{k: tuple(v) for k, v in extra.items()}}
    out: dict[str, tuple[str, ...]] = {}
    for name in wanted:
        if name in extra or name not in GROUPS:
            members: Sequence[str] = (name,)
        elif name == "world":
            members = tuple(table)
        else:
            members = GROUPS[name]
        for region in members:
            out[region] = table[region]
    return out
