"""Synthetic licence plates in regional styles, for training the plate recogniser.

Each plate is drawn from a *style* (one country or US state: colours, size, bands,
small texts) and one of its *formats* (a grammar such as ``LL-NNN-LL``). Only the
characters the grammar produces go into the label (A-Z0-9): country bands, state
names, slogans, city strips, separators and stickers are drawn but never labelled,
and so are the marks of US plates that readers take for characters: an emblem
between the groups (a state's outline, a peach, a bird, a seal), scenery behind the
characters, stacked dealer letters or an icon beside them.
The flat plate is then dirtied, framed, warped onto a background and degraded
(blur, noise, exposure, shadows, greyscale/infrared, JPEG) into a crop as a plate
detector would cut it: sometimes tight, often with a loose margin.

Rendering is pure: ``Generator.sample(i)`` depends only on (seed, i, fonts), so
DataLoader workers can call it in any order and get byte-identical images. Glyphs
and small texts are rendered once per process and cached as masks.

Adding a region: write its formats (``Format``) and one or more ``Style`` rows in
``STYLES``; the painter is shared.

CLI: ``python -m alprd.train.synth --out DIR --n N --seed S [--sheet sheet.png]``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import os
import random
import re
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from alprd.plates import CHARSET, DIGITS, LETTERS

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
BGR = tuple[int, int, int]


def _u8(a: Any) -> U8:
    return cast(U8, a)


def _f32(a: Any) -> F32:
    return cast(F32, a)


# Characters a recogniser confuses (0/O, 1/I, 8/B, 5/S, 2/Z, ...): drawn this many
# times more often wherever a format allows them.
CONFUSABLE = frozenset("OQDIBSZG01852")
CONFUSABLE_BOOST = 3.0

SCALE = 0.6  # px per mm of the flat plate (a 520 mm EU plate is 312 px wide)
_GLYPH_H = 64  # height of cached glyph / text masks

# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class Format:
    """A plate grammar. ``L`` letter (from ``letters``), ``N`` digit, ``X`` either,
    ``@`` one of ``prefixes``; ``{a,b}`` repeats the previous class a..b times.
    Drawn but not labelled: `` `` gap, ``-`` hyphen, ``*`` middle dot, ``.`` dot,
    ``|`` sticker slot (German seals); ``/`` starts the second line."""

    pattern: str
    weight: float = 1.0
    letters: str = LETTERS
    prefixes: tuple[str, ...] = ()
    max_chars: int = 0

    @property
    def lines(self) -> int:
        return self.pattern.count("/") + 1


_TOKEN = re.compile(r"([LNX@])(?:\{(\d+)(?:,(\d+))?\})?|([ \-*.|/])")


@functools.cache
def _tokens(pattern: str) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    pos = 0
    while pos < len(pattern):
        m = _TOKEN.match(pattern, pos)
        if m is None:
            raise ValueError(f"bad format pattern {pattern!r} at {pos}")
        if m.group(4):
            out.append((m.group(4), 1, 1))
        else:
            lo = int(m.group(2) or 1)
            hi = int(m.group(3) or lo)
            out.append((m.group(1), lo, hi))
        pos = m.end()
    return out


@functools.cache
def format_regex(fmt: Format) -> re.Pattern[str]:
    """The labels ``fmt`` can produce (separators dropped), for a full match."""
    parts = []
    for kind, lo, hi in _tokens(fmt.pattern):
        if kind == "L":
            cls = f"[{fmt.letters}]"
        elif kind == "N":
            cls = "[0-9]"
        elif kind == "X":
            cls = f"[{fmt.letters}0-9]"
        elif kind == "@":
            cls = "(?:" + "|".join(re.escape(p) for p in fmt.prefixes) + ")"
        else:
            continue
        parts.append(f"{cls}{{{lo},{hi}}}")
    return re.compile("".join(parts))


@functools.cache
def _choice_table(alphabet: str) -> tuple[list[str], list[float]]:
    chars = list(alphabet)
    weights = [CONFUSABLE_BOOST if c in CONFUSABLE else 1.0 for c in chars]
    cum: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    return chars, cum


def _pick(r: random.Random, alphabet: str) -> str:
    chars, cum = _choice_table(alphabet)
    return r.choices(chars, cum_weights=cum)[0]


def sample_text(fmt: Format, r: random.Random) -> tuple[str, list[list[str]]]:
    """(label, lines of drawn items): an item is one character or one separator."""
    for _ in range(20):
        lines: list[list[str]] = [[]]
        label: list[str] = []
        for kind, lo, hi in _tokens(fmt.pattern):
            if kind == "/":
                lines.append([])
                continue
            if kind in " -*.|":
                lines[-1].append(kind)
                continue
            for _ in range(r.randint(lo, hi)):
                if kind == "@":
                    chunk = r.choice(fmt.prefixes)
                elif kind == "L":
                    chunk = _pick(r, fmt.letters)
                elif kind == "N":
                    chunk = _pick(r, DIGITS)
                else:
                    chunk = _pick(r, fmt.letters + DIGITS)
                label.extend(chunk)
                lines[-1].extend(chunk)
        if not fmt.max_chars or len(label) <= fmt.max_chars:
            break
    return "".join(label), lines


# --------------------------------------------------------------------------- styles

WHITE: BGR = (236, 238, 238)
BLACK: BGR = (22, 22, 22)
EU_BLUE: BGR = (153, 51, 0)
EU_YELLOW: BGR = (0, 204, 255)
PLATE_YELLOW: BGR = (0, 196, 246)


@dataclass(frozen=True)
class Style:
    """How one country's (or state's) plates look. Sizes in mm; colours BGR."""

    key: str
    region: str
    formats: tuple[Format, ...]
    weight: float = 1.0
    colors: tuple[tuple[BGR, BGR], ...] = ((WHITE, BLACK),)  # (background, characters)
    size: tuple[float, float] = (520.0, 110.0)  # one line
    size2: tuple[float, float] = (280.0, 200.0)  # two lines
    band: tuple[str, ...] = ()  # EU band on the left, with one of these country codes
    top_band: str = ""  # a blue band across the top with this word (Mercosur)
    top_text: tuple[str, ...] = ()  # state name / city strip on top
    top_colors: tuple[BGR, ...] = ()  # its colours (default: the characters' colour)
    bottom_text: tuple[str, ...] = ()  # slogan at the bottom
    right_band: bool = False  # FR/IT blue band on the right with a small number
    side_text: str = ""  # small text at the left (India "IND")
    stickers: float = 0.0  # probability of registration stickers in the top corners
    border: float = 0.6  # probability of a printed border
    emboss: float = 0.0  # probability of embossed characters (a shadow edge)
    graphic: float = 0.0  # probability of a coloured background graphic (US)
    char_h: float = 0.68  # character height / plate height (one line)
    fonts: tuple[str, ...] = ()  # preferred font file names (substrings), if present


_NL = "BDFGHJKLNPRSTVXZ"
_ES = "BCDFGHJKLMNPRSTVWXYZ"
_FR = "ABCDEFGHJKLMNPQRSTVWXYZ"
_IT = "ABCDEFGHJKLMNPRSTVWXYZ"
_DE_CITIES = (
    "B", "M", "HH", "K", "F", "S", "D", "DO", "E", "HB", "BN", "MS", "KA", "HD", "A",
    "N", "L", "DD", "H", "BO", "WOB", "GI", "OS", "KI", "AC", "BI", "MZ", "WI", "LU",
    "ROS", "SB", "HRO", "FFB", "LB", "ES", "GP", "BB", "RV", "TUT", "FR", "UL", "PB",
)  # fmt: skip
_RO_COUNTIES = (
    "AB", "AR", "AG", "BC", "BH", "BN", "BT", "BV", "BR", "BZ", "CS", "CL", "CJ", "CT",
    "CV", "DB", "DJ", "GL", "GR", "GJ", "HR", "HD", "IL", "IS", "IF", "MM", "MH", "MS",
    "NT", "OT", "PH", "SM", "SJ", "SB", "SV", "TR", "TM", "TL", "VS", "VL", "VN",
)  # fmt: skip
_IN_STATES = (
    "KA", "MH", "DL", "TN", "KL", "AP", "TS", "GJ", "RJ", "UP", "WB", "HR", "PB", "MP",
    "OD", "BR", "CG", "JH", "UK", "HP", "GA", "AS", "JK", "CH",
)  # fmt: skip
_EU_OTHER = (
    "A", "B", "BG", "CZ", "DK", "EST", "FIN", "H", "HR", "IRL", "L", "LT", "LV", "P",
    "S", "SK", "SLO", "GR", "CY", "M",
)  # fmt: skip
_BR_CITIES = (
    "PR-CURITIBA", "PR-PARANAGUA", "PR-PONTA GROSSA", "PR-TAPEJARA", "PR-LONDRINA",
    "SP-SAO PAULO", "SP-CAMPINAS", "RJ-RIO DE JANEIRO", "MG-BELO HORIZONTE",
    "SC-FLORIANOPOLIS", "SC-JOINVILLE", "RS-PORTO ALEGRE", "BA-SALVADOR", "GO-GOIANIA",
)  # fmt: skip
_US_SLOGANS = (
    "dmv.ca.gov", "EXCELSIOR", "THE LONE STAR STATE", "Sunshine State", "Land of Lincoln",
    "visitPA.com", "BIRTHPLACE of AVIATION", "PURE MICHIGAN", "Peach State",
    "Grand Canyon State", "Garden State", "Evergreen State", "Virginia is for Lovers",
    "The Spirit of America", "America's Dairyland", "Famous Potatoes", "Live Free or Die",
)  # fmt: skip

_F = Format
_NL_SIDECODES = (
        "LL-NN-NN",
        "NN-NN-LL",
        "NN-LL-NN",
        "LL-NN-LL",
        "LL-LL-NN",
        "NN-LL-LL",
        "NN-LLL-N",
        "N-LLL-NN",
        "LL-NNN-L",
        "L-NNN-LL",
        "LLL-NN-L",
        "L-NN-LLL",
        "N-LL-NNN",
        "NNN-LL-N",
)  # fmt: skip
_NL_FORMATS = tuple(_F(p, letters=_NL) for p in _NL_SIDECODES)
_US_COMMON = (_F("LLL-NNNN"), _F("LLL NNNN"), _F("NLLLNNN"), _F("NNN LLL"), _F("LLL/NNNN", 0.15))

_DARK_BLUE: BGR = (110, 40, 10)
_RED: BGR = (40, 30, 170)
_GREEN: BGR = (40, 100, 20)


def _us(name: str, fmts: tuple[Format, ...], fg: BGR, top: BGR, slogan: str) -> Style:
    return Style(
        key=name,
        region="us",
        formats=fmts,
        colors=((WHITE, fg),),
        size=(305.0, 152.0),
        size2=(305.0, 152.0),
        top_text=(name, name.title()),
        top_colors=(top, fg),
        bottom_text=(slogan, ""),
        stickers=0.6,
        border=0.5,
        emboss=0.5,
        graphic=0.35,
        char_h=0.46,
    )


STYLES: tuple[Style, ...] = (
    # ---- Europe: blue band on the left with the country code (never in the label)
    Style("NL", "eu", _NL_FORMATS, 1.2, ((PLATE_YELLOW, BLACK),), band=("NL",), border=0.5,
          fonts=("OSP-DIN", "NimbusSansNarrow")),
    Style("DE", "eu", (_F("@|L{1,2} N{1,4}", prefixes=_DE_CITIES, max_chars=8),
                       _F("@|L{1,2}/N{1,4}", 0.08, prefixes=_DE_CITIES, max_chars=8)),
          1.2, band=("D",), border=0.9, fonts=("OSP-DIN",)),
    Style("FR", "eu", (_F("LL-NNN-LL", letters=_FR),), 1.0, band=("F",), right_band=True,
          border=0.7),
    Style("IT", "eu", (_F("LL NNN LL", letters=_IT), _F("LLNNNLL", 0.5, letters=_IT)), 1.0,
          band=("I",), right_band=True, border=0.4),
    Style("ES", "eu", (_F("NNNN LLL", letters=_ES), _F("NNNN/LLL", 0.08, letters=_ES)), 1.0,
          band=("E",), border=0.7),
    Style("PL", "eu", (_F("LL NNNNN"), _F("LL NNNLL"), _F("LL NNNNL"), _F("LLL NNNN"),
                       _F("LLL NNLL"), _F("LL/NNNNN", 0.1)), 0.8, band=("PL",), border=0.9),
    Style("RO", "eu", (_F("@ NNN LLL", prefixes=("B",)), _F("@ NN LLL", prefixes=("B",)),
                       _F("@ NN LLL", 2.0, prefixes=_RO_COUNTIES),
                       _F("@ NN/LLL", 0.1, prefixes=_RO_COUNTIES)), 0.8, band=("RO",)),
    Style("GB", "eu", (_F("LLNN LLL"),), 0.6, ((WHITE, BLACK), (PLATE_YELLOW, BLACK)),
          band=("UK", "GB"), border=0.3),
    Style("EU", "eu", (_F("LLL NNN"), _F("LL NNN LL"), _F("NNN LLL"), _F("LL-NNN-LL"),
                       _F("L NNNN LL"), _F("LLL-NNN"), _F("LL NNNN"), _F("LL NNN/LL", 0.1)),
          1.0, band=_EU_OTHER),
    # ---- USA: state name on top, slogan at the bottom, stickers, mostly one line
    _us("CALIFORNIA", (_F("NLLLNNN", 3.0), _F("NLLL NNN")), _DARK_BLUE, _RED, "dmv.ca.gov"),
    _us("NEW YORK", _US_COMMON, _DARK_BLUE, _DARK_BLUE, "EXCELSIOR"),
    _us("TEXAS", _US_COMMON, BLACK, BLACK, "THE LONE STAR STATE"),
    _us("FLORIDA", (_F("LLL LNN"), _F("NNN LLL"), _F("LLLL NN")), _GREEN, (0, 110, 230),
        "Sunshine State"),
    _us("ILLINOIS", (_F("LL NNNNN"), _F("LLL NNNN")), _DARK_BLUE, _RED, "Land of Lincoln"),
    _us("PENNSYLVANIA", (_F("LLL-NNNN"),), _DARK_BLUE, _DARK_BLUE, "visitPA.com"),
    _us("OHIO", _US_COMMON, _DARK_BLUE, _RED, "BIRTHPLACE of AVIATION"),
    _us("MICHIGAN", _US_COMMON, _DARK_BLUE, _DARK_BLUE, "PURE MICHIGAN"),
    _us("GEORGIA", _US_COMMON, BLACK, _GREEN, "Peach State"),
    _us("ARIZONA", _US_COMMON, _DARK_BLUE, _RED, "Grand Canyon State"),
    _us("NEW JERSEY", (_F("LNN-LLL"), _F("LLL-NNL")), BLACK, BLACK, "Garden State"),
    _us("WASHINGTON", _US_COMMON, _DARK_BLUE, _DARK_BLUE, "Evergreen State"),
    _us("VIRGINIA", _US_COMMON, _DARK_BLUE, _DARK_BLUE, "Virginia is for Lovers"),
    _us("MASSACHUSETTS", (_F("NLLL NN"), _F("NLL LNN")), _RED, _RED, "The Spirit of America"),
    _us("STATE", _US_COMMON, BLACK, BLACK, ""),  # any state, random colours (see _paint)
    # ---- Brazil: grey (or red) LLL-NNNN with the city strip on top
    Style("BR", "br", (_F("LLL*NNNN"), _F("LLL-NNNN", 0.3), _F("LLL/NNNN", 0.15)), 1.0,
          (((170, 172, 172), BLACK), ((36, 36, 160), WHITE)),
          size=(400.0, 130.0), size2=(187.0, 136.0), top_text=_BR_CITIES, border=0.8,
          char_h=0.6, fonts=("OSP-DIN", "NimbusSansNarrow", "RobotoCondensed")),
    # ---- Mercosur (Brazil since 2018): LLLNLNN under a blue BRASIL band
    Style("MERCOSUR", "mercosur", (_F("LLLNLNN"), _F("LLL/NLNN", 0.15)), 1.0,
          ((WHITE, BLACK), (WHITE, BLACK), (WHITE, _RED)), size=(400.0, 130.0),
          size2=(200.0, 170.0), top_band="BRASIL", border=0.9, char_h=0.56,
          fonts=("OSP-DIN", "NimbusSansNarrow")),
    # ---- India: KA22P3368-like, white (private) or yellow (commercial), 1 or 2 lines
    Style("IN", "in", (_F("@ NN L NNNN", prefixes=_IN_STATES),
                       _F("@ NN LL NNNN", prefixes=_IN_STATES),
                       _F("@NNLNNNN", 0.5, prefixes=_IN_STATES),
                       _F("@NNLLNNNN", 0.5, prefixes=_IN_STATES),
                       _F("@ NN/LL NNNN", 0.5, prefixes=_IN_STATES),
                       _F("@ NN/L NNNN", 0.4, prefixes=_IN_STATES)), 1.0,
          ((WHITE, BLACK), (WHITE, BLACK), (PLATE_YELLOW, BLACK)), size=(500.0, 120.0),
          size2=(285.0, 200.0), side_text="IND", border=0.8, char_h=0.62),
)  # fmt: skip

REGIONS: tuple[str, ...] = tuple(dict.fromkeys(s.region for s in STYLES))
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "eu": 0.35,
    "us": 0.3,
    "br": 0.1,
    "mercosur": 0.1,
    "in": 0.15,
}


def region_regex(region: str) -> re.Pattern[str]:
    """Every label a region's formats can produce (a full match)."""
    pats = [format_regex(f).pattern for s in STYLES if s.region == region for f in s.formats]
    if not pats:
        raise ValueError(f"unknown region {region!r}; known: {', '.join(REGIONS)}")
    return re.compile("|".join(f"(?:{p})" for p in pats))


# --------------------------------------------------------------------------- fonts

FONT_DIRS: tuple[Path, ...] = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# File names known to draw plate-like capitals and digits with distinct 1/I and 0/O.
KNOWN_FONTS: tuple[str, ...] = (
    "OSP-DIN.ttf",  # fonts-opendin
    "NimbusSansNarrow-Bold.otf", "NimbusSansNarrow-Regular.otf",  # fonts-urw-base35
    "RobotoCondensed-Bold.ttf", "RobotoCondensed-Medium.ttf",  # fonts-roboto-unhinted
    "RobotoCondensed-Regular.ttf",
    "OpenSans-CondBold.ttf", "OpenSans-Semibold.ttf",  # fonts-open-sans
    "DejaVuSansCondensed-Bold.ttf", "DejaVuSansCondensed.ttf",  # fonts-dejavu-extra
    "BebasNeue-Bold.otf", "BebasNeue-Regular.otf",  # fonts-bebas-neue
    "B612-Bold.otf", "B612Mono-Bold.otf",  # fonts-b612
)  # fmt: skip
FALLBACK_FONTS: tuple[str, ...] = ("DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Bold.ttf")


class NoFontsError(FileNotFoundError):
    pass


def _usable(path: Path) -> bool:
    try:
        font = ImageFont.truetype(str(path), 40)
        boxes = {c: font.getbbox(c) for c in "A0Z8"}
        masks = {c: bytes(font.getmask(c)) for c in "AZ08"}
    except (OSError, ValueError):
        return False
    if any(b[2] - b[0] <= 2 or b[3] - b[1] <= 10 for b in boxes.values()):
        return False
    return len(set(masks.values())) == 4  # not one "missing glyph" box for all


def find_fonts(
    extra_dirs: Sequence[Path] = (), *, system_dirs: Sequence[Path] = FONT_DIRS
) -> list[Path]:
    """Usable plate fonts: every TTF/OTF under ``extra_dirs`` (and the folders in
    ``$ALPRD_FONTS``, colon-separated: a training machine without the Debian font
    packages), plus the known-good files (``KNOWN_FONTS``) under ``system_dirs``;
    when none of those is found, a DejaVu Sans (Condensed) Bold. Raises
    ``NoFontsError`` when nothing usable is found."""
    env = os.environ.get("ALPRD_FONTS", "")
    extra_dirs = [*extra_dirs, *(Path(d) for d in env.split(":") if d)]
    found: dict[str, Path] = {}
    rejected: list[Path] = []
    for d in extra_dirs:
        for p in sorted(Path(d).rglob("*")):
            if p.suffix.lower() in (".ttf", ".otf") and p.is_file():
                if _usable(p):
                    found.setdefault(p.name, p)
                else:
                    rejected.append(p)
    system: dict[str, Path] = {}
    for d in system_dirs:
        if Path(d).is_dir():
            for root, _dirs, files in os.walk(d):
                for f in files:
                    if f in KNOWN_FONTS or f in FALLBACK_FONTS:
                        system.setdefault(f, Path(root) / f)
    for name in KNOWN_FONTS:
        if name in system and name not in found and _usable(system[name]):
            found[name] = system[name]
    if not found:
        for name in FALLBACK_FONTS:
            if name in system and _usable(system[name]):
                found[name] = system[name]
                break
    if not found:
        where = ", ".join(str(d) for d in [*extra_dirs, *system_dirs]) or "(no folders)"
        bad = f"; unusable font files: {', '.join(map(str, rejected[:5]))}" if rejected else ""
        raise NoFontsError(
            f"no usable plate font (TTF/OTF with A-Z and 0-9) found in {where}{bad}. "
            "Install e.g. `apt-get install fonts-dejavu-extra fonts-opendin fonts-urw-base35` "
            "or pass a folder of TTF/OTF files (--fonts-dir)."
        )
    return sorted(found.values(), key=lambda p: p.name)


@functools.lru_cache(maxsize=64)
def _font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, 96)


@functools.lru_cache(maxsize=16384)
def _text_mask(path: str, text: str) -> U8:
    """``text`` in ``path``'s font as an ink-tight mask, ``_GLYPH_H`` pixels high."""
    font = _font(path)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (max(1, int(right - left)) + 8, max(1, int(bottom - top)) + 8), 0)
    ImageDraw.Draw(img).text((4 - left, 4 - top), text, font=font, fill=255)
    a = np.asarray(img)
    rows = np.flatnonzero(a.max(axis=1) > 40)
    cols = np.flatnonzero(a.max(axis=0) > 40)
    if rows.size == 0 or cols.size == 0:
        return np.zeros((_GLYPH_H, _GLYPH_H // 3), np.uint8)
    a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    w = max(1, round(a.shape[1] * _GLYPH_H / a.shape[0]))
    return _u8(cv2.resize(a, (w, _GLYPH_H), interpolation=cv2.INTER_AREA))


# --------------------------------------------------------------------------- drawing helpers


@functools.lru_cache(maxsize=1)
def _noise_table() -> F32:
    return np.random.default_rng(20240610).standard_normal(1 << 21, dtype=np.float32)


def _field(r: random.Random, h: int, w: int, gh: int = 3, gw: int = 5) -> F32:
    """A smooth random field in [0, 1] of size h x w."""
    small = np.array([r.random() for _ in range(gh * gw)], np.float32).reshape(gh, gw)
    return _f32(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))


def _blend(img: F32, mask: U8, x: int, y: int, color: Sequence[float], alpha: float = 1.0) -> None:
    """Paint ``color`` into ``img`` through ``mask`` placed at (x, y), clipped."""
    h, w = mask.shape
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(img.shape[1], x + w), min(img.shape[0], y + h)
    if x1 <= x0 or y1 <= y0:
        return
    a = mask[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32) * (alpha / 255.0)
    roi = img[y0:y1, x0:x1]
    roi += (np.asarray(color, np.float32) - roi) * a[..., None]


def _fit(mask: U8, w: int, h: int, stretch: float = 1.0) -> U8:
    """Resize ``mask`` to height ``h``, its width scaled by ``stretch``, squeezed to ``w``."""
    nat = mask.shape[1] * h / mask.shape[0] * stretch
    tw = max(1, min(w, round(nat)))
    return _u8(cv2.resize(mask, (tw, max(1, h)), interpolation=cv2.INTER_AREA))


def _small_text(
    img: F32,
    font: str,
    text: str,
    box: tuple[int, int, int, int],
    color: Sequence[float],
    align: float = 0.5,
) -> None:
    if not text:
        return
    x, y, w, h = box
    if w < 2 or h < 2:
        return
    m = _fit(_text_mask(font, text), w, h)
    _blend(img, m, x + round((w - m.shape[1]) * align), y, color)


def _line_mask(
    font: str, items: Sequence[str], spacing: float
) -> tuple[U8, list[tuple[int, int, str]]]:
    """One line of characters and separators at height ``_GLYPH_H``; also the x
    ranges of the slots to decorate (``|`` seal slots, ``^`` emblem slots), each with
    its kind."""
    g = _GLYPH_H
    gap = round(spacing * g)
    pieces: list[tuple[str, int]] = []
    for it in items:
        if it in CHARSET:
            pieces.append((it, _text_mask(font, it).shape[1]))
        elif it == " ":
            pieces.append((it, round(0.3 * g)))
        elif it == "-":
            pieces.append((it, round(0.32 * g)))
        elif it in "*.":
            pieces.append((it, round(0.16 * g)))
        elif it == "|":
            pieces.append((it, round(0.62 * g)))
        elif it == EMBLEM:
            pieces.append((it, round(0.7 * g)))
    total = sum(w for _, w in pieces) + gap * max(0, len(pieces) - 1) + 2
    out = np.zeros((g, total), np.uint8)
    slots: list[tuple[int, int, str]] = []
    x = 1
    for it, w in pieces:
        if it in CHARSET:
            out[:, x : x + w] = np.maximum(out[:, x : x + w], _text_mask(font, it))
        elif it == "-":
            out[round(0.44 * g) : round(0.56 * g), x : x + w] = 255
        elif it == "*":
            cv2.circle(out, (x + w // 2, g // 2), max(2, round(0.06 * g)), 255, -1)
        elif it == ".":
            cv2.circle(out, (x + w // 2, round(0.9 * g)), max(2, round(0.06 * g)), 255, -1)
        elif it in ("|", EMBLEM):
            slots.append((x, x + w, it))
        x += w + gap
    return out, slots


def _rect(
    img: F32, x0: int, y0: int, x1: int, y1: int, color: Sequence[float], t: int = -1
) -> None:
    cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(c) for c in color), t)


def _jitter(r: random.Random, c: Sequence[int], amount: int) -> tuple[float, float, float]:
    d = r.uniform(-amount, amount)
    return (
        min(255.0, max(0.0, c[0] + d + r.uniform(-amount, amount) * 0.5)),
        min(255.0, max(0.0, c[1] + d + r.uniform(-amount, amount) * 0.5)),
        min(255.0, max(0.0, c[2] + d + r.uniform(-amount, amount) * 0.5)),
    )


# --------------------------------------------------------------------------- US marks

#: The drawn-not-labelled emblem between character groups of a US plate (a state's
#: outline, a peach, an orange, a bird, a heart, a star): its slot in a line's items.
EMBLEM = "^"
US_EMBLEM = 0.45  # share of US plates with an emblem between groups
US_PICTURE = 0.35  # share with scenery (hills, birds, a sun) behind the characters
US_SIDE_MARK = 0.25  # share with stacked small letters or an icon beside the characters


def _with_emblem(items: list[str], r: random.Random) -> list[str]:
    """``items`` with its first gap or hyphen turned into an emblem slot, or (no
    separator) an emblem put in after a middle character."""
    out = list(items)
    for i, it in enumerate(out):
        if it in " -*":
            out[i] = EMBLEM
            return out
    chars = [i for i, it in enumerate(out) if it in CHARSET]
    if len(chars) >= 4:
        out.insert(chars[r.randint(1, len(chars) - 2)] + 1, EMBLEM)
    return out


def _colour(r: random.Random) -> tuple[float, float, float]:
    return (float(r.randint(0, 255)), float(r.randint(0, 255)), float(r.randint(0, 255)))


def _blob(
    r: random.Random, cx: float, cy: float, rx: float, ry: float, n: int
) -> npt.NDArray[np.int32]:
    """A random star-shaped polygon round (cx, cy): a state's outline, a hill, a bird."""
    a = np.sort(np.array([r.uniform(0, 2 * math.pi) for _ in range(n)]))
    k = np.array([r.uniform(0.55, 1.0) for _ in range(n)])
    pts = np.stack([cx + rx * k * np.cos(a), cy + ry * k * np.sin(a)], axis=1)
    return np.round(pts).astype(np.int32)


def _emblem(img: F32, box: tuple[int, int, int, int], r: random.Random) -> str:
    """Draw one emblem in ``box`` (x, y, w, h: the slot between groups, the line's
    height); return its kind."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h * r.uniform(0.4, 0.6)
    size = min(w, h) * r.uniform(0.35, 0.55)
    col = _colour(r)
    kind = r.choice(("outline", "fruit", "bird", "heart", "star", "seal"))
    if kind == "outline":  # a state's silhouette, filled or drawn
        pts = _blob(
            r, cx, cy, size * r.uniform(0.8, 1.3), size * r.uniform(0.6, 1.1), r.randint(6, 11)
        )
        cv2.fillPoly(img, [pts], col) if r.random() < 0.6 else cv2.polylines(
            img, [pts], True, col, max(1, round(0.06 * size))
        )
    elif kind == "fruit":  # a peach or an orange with a leaf
        cv2.circle(img, (round(cx), round(cy)), max(2, round(size)), col, -1)
        cv2.ellipse(
            img, (round(cx + 0.4 * size), round(cy - size)), (max(1, round(0.5 * size)),
            max(1, round(0.22 * size))), r.uniform(-40, 40), 0, 360, (40.0, 140.0, 40.0), -1,
        )  # fmt: skip
    elif kind == "bird":  # a body and two wings, often taller than the slot
        for dx, dy, ax, ay in ((0, 0, 0.5, 0.9), (-0.7, -0.4, 0.9, 0.25), (0.7, -0.4, 0.9, 0.25)):
            cv2.ellipse(
                img, (round(cx + dx * size), round(cy + dy * size)),
                (max(1, round(ax * size)), max(1, round(ay * size))),
                r.uniform(-30, 30), 0, 360, col, -1,
            )  # fmt: skip
    elif kind == "heart":
        for dx in (-0.45, 0.45):
            cv2.circle(
                img,
                (round(cx + dx * size), round(cy - 0.3 * size)),
                max(1, round(0.5 * size)),
                col,
                -1,
            )
        tri = np.array(
            [[cx - size, cy - 0.2 * size], [cx + size, cy - 0.2 * size], [cx, cy + size]]
        )
        cv2.fillPoly(img, [np.round(tri).astype(np.int32)], col)
    elif kind == "star":
        a = [math.pi / 2 + k * math.pi / 5 for k in range(10)]
        star = [
            (
                cx + size * (1 if k % 2 == 0 else 0.45) * math.cos(t),
                cy - size * (1 if k % 2 == 0 else 0.45) * math.sin(t),
            )
            for k, t in enumerate(a)
        ]
        cv2.fillPoly(img, [np.round(np.array(star)).astype(np.int32)], col)
    else:  # a seal: a ring round a disc of another colour (never an O alone)
        rad = max(3, round(size))
        cv2.circle(img, (round(cx), round(cy)), rad, col, max(1, round(0.15 * size)))
        cv2.circle(img, (round(cx), round(cy)), max(1, round(0.6 * rad)), _colour(r), -1)
    return f"<{kind}>"


def _picture(img: F32, r: random.Random) -> None:
    """Scenery behind the characters, faint or strong: a hill or mountain range, a
    sun, a bird, a tree."""
    H, W = img.shape[:2]
    layer = img.copy()
    col = _colour(r)
    kind = r.choice(("hills", "sun", "bird", "tree"))
    if kind == "hills":
        n = r.randint(3, 7)
        xs = sorted(r.uniform(0, W) for _ in range(n))
        top = [(0, H)] + [(xx, r.uniform(0.35, 0.8) * H) for xx in xs] + [(W, H)]
        cv2.fillPoly(layer, [np.round(np.array(top)).astype(np.int32)], col)
    elif kind == "sun":
        cv2.circle(
            layer,
            (round(r.uniform(0.1, 0.9) * W), round(r.uniform(0.2, 0.7) * H)),
            max(3, round(r.uniform(0.1, 0.3) * H)),
            col,
            -1,
        )
    elif kind == "bird":
        cx, cy, s = r.uniform(0.15, 0.85) * W, r.uniform(0.3, 0.7) * H, r.uniform(0.15, 0.35) * H
        cv2.fillPoly(layer, [_blob(r, cx, cy, s * 1.4, s, r.randint(7, 12))], col)
    else:
        cx = r.uniform(0.05, 0.95) * W
        cv2.rectangle(
            layer, (round(cx - 0.02 * W), round(0.55 * H)), (round(cx + 0.02 * W), H), col, -1
        )
        cv2.fillPoly(layer, [_blob(r, cx, 0.45 * H, 0.08 * W, 0.2 * H, 9)], col)
    alpha = r.uniform(0.2, 0.85)
    img += (layer - img) * np.float32(alpha)


def _side_mark(
    img: F32, box: tuple[int, int, int, int], fg: Sequence[float], font: str, r: random.Random
) -> str:
    """Beside the characters: two or three small letters stacked (a dealer's or a
    university's mark) or an icon (the wheelchair symbol, a seal); return what."""
    x, y, w, h = box
    if r.random() < 0.6:
        word = "".join(r.choice(LETTERS) for _ in range(r.randint(2, 3)))
        lh = h // len(word)
        col = fg if r.random() < 0.6 else _colour(r)
        for k, c in enumerate(word):
            _small_text(img, font, c, (x, y + k * lh, w, max(2, round(lh * 0.85))), col)
        return f"<{word}>"
    col = (150.0, 70.0, 20.0) if r.random() < 0.6 else tuple(fg)
    t = max(1, round(0.08 * w))
    cv2.circle(img, (x + w // 2, y + round(0.15 * h)), max(1, round(0.1 * h)), col, -1)
    cv2.line(img, (x + w // 2, y + round(0.3 * h)), (x + w // 2, y + round(0.6 * h)), col, t)
    cv2.circle(img, (x + w // 2, y + round(0.75 * h)), max(2, round(0.22 * min(w, h))), col, t)
    return "<icon>"


# --------------------------------------------------------------------------- painting


@dataclass(frozen=True)
class PlateInfo:
    """What a sample was drawn from (for tests and inspection)."""

    style: str
    format: Format
    font: str
    extras: tuple[str, ...]  # texts drawn besides the label (band code, state, slogan, city)


def _paint(
    style: Style, fmt: Format, lines: list[list[str]], font: str, small_font: str, r: random.Random
) -> tuple[F32, list[str]]:
    """The flat plate (float BGR), and the extra texts drawn on it."""
    n_lines = len(lines)
    wmm, hmm = style.size if n_lines == 1 else style.size2
    W, H = round(wmm * SCALE * r.uniform(0.97, 1.03)), round(hmm * SCALE)
    bg, fg = r.choice(style.colors)
    if style.key == "STATE":  # any US state: random light background, dark characters
        bg = (r.randint(170, 255), r.randint(170, 255), r.randint(170, 255))
        fg = (r.randint(0, 120), r.randint(0, 90), r.randint(0, 90))
    bgc = _jitter(r, bg, 10)
    fgc = _jitter(r, fg, 12)
    img = np.empty((H, W, 3), np.float32)
    img[:] = bgc
    extras: list[str] = []

    if r.random() < style.graphic:  # US background art: a soft coloured wash
        tint = np.array([r.uniform(-70, 30) for _ in range(3)], np.float32)
        f = _field(r, H, W, 2, 4)
        f = np.clip((f - 0.45) * 2.5, 0, 1)
        img += f[..., None] * tint

    m = round(0.045 * H)  # inset from the plate edge
    x0, x1, y0, y1 = m, W - m, m, H - m
    if style.region == "us" and r.random() < US_PICTURE:  # scenery behind the characters
        for _ in range(r.randint(1, 3)):
            _picture(img, r)
        extras.append("<picture>")
    if style.region == "us" and r.random() < US_SIDE_MARK:  # stacked letters or an icon
        sw = round(r.uniform(0.07, 0.11) * W)
        left = r.random() < 0.5
        sx = x0 + round(0.02 * W) if left else x1 - round(0.02 * W) - sw
        extras.append(
            _side_mark(img, (sx, round(0.3 * H), sw, round(0.45 * H)), fgc, small_font, r)
        )
        if left:
            x0 = sx + sw
        else:
            x1 = sx

    if style.band:
        code = r.choice(style.band)
        bw = round(45 * SCALE * (1.0 if n_lines == 1 else 0.8))
        _rect(img, 0, 0, bw, H - 1, _jitter(r, EU_BLUE, 12))
        cx, cy, rad = bw / 2, 0.32 * H if n_lines == 1 else 0.3 * H, 0.2 * bw * 1.3
        star = _jitter(r, EU_YELLOW, 15)
        for k in range(12):
            a = k * math.pi / 6
            cv2.circle(
                img,
                (round(cx + rad * math.cos(a)), round(cy + rad * math.sin(a))),
                max(1, round(0.045 * bw)),
                star,
                -1,
            )
        th = round(0.26 * H if n_lines == 1 else 0.16 * H)
        _small_text(
            img,
            small_font,
            code,
            (round(0.12 * bw), round(H * 0.62), round(0.76 * bw), th),
            (235, 235, 235),
        )
        extras.append(code)
        x0 = bw + m
    if style.right_band:
        bw = round(45 * SCALE)
        _rect(img, W - bw, 0, W - 1, H - 1, _jitter(r, EU_BLUE, 12))
        cv2.circle(img, (W - bw // 2, round(0.32 * H)), round(0.22 * bw), (200, 200, 210), -1)
        num = f"{r.randint(1, 99):02d}"
        _small_text(
            img,
            small_font,
            num,
            (W - bw + round(0.2 * bw), round(0.6 * H), round(0.6 * bw), round(0.26 * H)),
            (235, 235, 235),
        )
        extras.append(num)
        x1 = W - bw - m
    if style.side_text:
        sw = round(0.09 * W)
        cv2.circle(img, (x0 + sw // 2, round(0.3 * H)), max(2, round(0.16 * sw)), (160, 90, 30), 1)
        _small_text(
            img,
            small_font,
            style.side_text,
            (x0, round(0.55 * H), sw, round(0.15 * H)),
            (150, 80, 20),
        )
        extras.append(style.side_text)
        x0 += sw
    if style.top_band:
        bh = round(0.22 * H * (1.0 if n_lines == 1 else 0.75))
        _rect(img, 0, 0, W - 1, bh, _jitter(r, (170, 70, 0), 12))
        _small_text(
            img,
            small_font,
            style.top_band,
            (round(0.35 * W), round(0.2 * bh), round(0.3 * W), round(0.6 * bh)),
            (240, 240, 240),
        )
        fw = round(0.09 * W)  # the flag, right
        _rect(img, W - m - fw, round(0.18 * bh), W - m, round(0.82 * bh), (60, 150, 40))
        cv2.circle(img, (W - m - fw // 2, bh // 2), max(2, round(0.22 * bh)), (150, 60, 20), -1)
        cv2.circle(img, (m + fw // 2, bh // 2), max(2, round(0.3 * bh)), (230, 230, 230), 1)
        extras.append(style.top_band)
        y0 = bh + m
    if style.top_text:
        t = r.choice(style.top_text)
        if t:
            sh = round((0.17 if n_lines == 1 or style.region == "us" else 0.12) * H)
            col = r.choice(style.top_colors) if style.top_colors else fgc
            if style.key == "STATE":
                t = r.choice(("OREGON", "Nevada", "COLORADO", "Utah", "MONTANA", "Maine", "IOWA"))
                col = fgc
            sw = round((x1 - x0) * (0.55 if style.region == "us" else 0.45))
            _small_text(img, small_font, t, (x0 + (x1 - x0 - sw) // 2, y0, sw, sh), col)
            extras.append(t)
            y0 += sh + round(0.03 * H)
    if style.bottom_text:
        t = r.choice(style.bottom_text)
        if t:
            sh = round(0.1 * H)
            sw = round((x1 - x0) * 0.55)
            _small_text(img, small_font, t, (x0 + (x1 - x0 - sw) // 2, y1 - sh, sw, sh), fgc)
            extras.append(t)
        y1 -= round(0.13 * H)
    elif style.region == "us":
        y1 -= round(0.1 * H)

    # the characters, a little clear of the bands and the border
    pad = round(0.02 * W)
    x0, x1 = x0 + pad, x1 - pad
    spacing = r.uniform(0.05, 0.16)
    stretch = r.uniform(0.88, 1.12)
    if n_lines == 1:
        ch = round(min(style.char_h * H, (y1 - y0) * 0.95) * r.uniform(0.9, 1.0))
        boxes = [(y0 + (y1 - y0 - ch) // 2, ch)]
    else:
        ch = round((y1 - y0) * r.uniform(0.38, 0.43))
        gap = (y1 - y0 - 2 * ch) // 3
        boxes = [(y0 + gap, ch), (y1 - gap - ch, ch)]
    if style.region == "us" and r.random() < US_EMBLEM:
        lines = [_with_emblem(items, r) for items in lines]
    sticker_slots: list[tuple[int, int, int, int, str]] = []  # x0, x1, line top, height, kind
    for items, (ly, lh) in zip(lines, boxes, strict=True):
        mask, slots = _line_mask(font, items, spacing)
        tm = _fit(mask, x1 - x0, lh, stretch)
        sx = tm.shape[1] / mask.shape[1]
        lx = x0 + (x1 - x0 - tm.shape[1]) // 2
        if r.random() < style.emboss:
            dx, dy = r.choice((1, 2)), r.choice((1, 2))
            _blend(img, tm, lx + dx, ly + dy, [c * 0.55 for c in bgc], 0.7)
        _blend(img, tm, lx, ly, fgc)
        sticker_slots += [(lx + round(a * sx), lx + round(b * sx), ly, lh, k) for a, b, k in slots]
    for sx0, sx1, sy, sh, kind in sticker_slots:
        if kind == EMBLEM:
            extras.append(_emblem(img, (sx0, sy, sx1 - sx0, sh), r))
            continue
        # German seals: the inspection sticker above, the district seal below
        cx, rr = (sx0 + sx1) // 2, max(3, round(0.36 * (sx1 - sx0)))
        hu = r.choice(((60, 110, 230), (40, 170, 60), (210, 110, 40), (40, 200, 230)))
        cv2.circle(img, (cx, sy + round(0.27 * sh)), rr, hu, -1)
        cv2.circle(img, (cx, sy + round(0.74 * sh)), rr, (150, 150, 160), -1)
        cv2.circle(img, (cx, sy + round(0.74 * sh)), max(1, rr // 2), (60, 60, 160), -1)

    if r.random() < style.stickers:  # registration stickers in the top corners
        sw, sh = round(0.14 * W), round(0.16 * H)
        for corner in r.sample((0, 1), r.randint(1, 2)):
            col = _jitter(
                r,
                r.choice(
                    ((30, 200, 230), (40, 40, 200), (200, 90, 30), (40, 160, 40), (200, 200, 200))
                ),
                20,
            )
            sx = m if corner == 0 else W - m - sw
            _rect(img, sx, m, sx + sw, m + sh, col)
            num = str(r.randint(1, 12)) if corner == 0 else f"{r.randint(22, 27):02d}"
            _small_text(
                img,
                small_font,
                num,
                (sx + sw // 4, m + sh // 5, sw // 2, round(sh * 0.6)),
                (20, 20, 20),
            )
    if r.random() < style.border:
        bt = max(1, round(r.uniform(0.012, 0.03) * H))
        _rect(img, bt // 2 + 1, bt // 2 + 1, W - 2 - bt // 2, H - 2 - bt // 2, fgc, bt)
    if r.random() < 0.35:  # screws
        sc = _jitter(r, (150, 150, 150), 40)
        rad = max(2, round(0.035 * H))
        ys = (round(0.5 * H),) if style.region == "us" or r.random() < 0.3 else (round(0.12 * H),)
        for xx in (
            (round(0.2 * W), round(0.8 * W))
            if style.region == "us"
            else (round(0.12 * W), round(0.88 * W))
        ):
            for yy in ys if style.region != "us" else (round(0.12 * H),):
                cv2.circle(img, (xx, yy), rad, sc, -1)
    return img, extras


# --------------------------------------------------------------------------- degradation

_CAR_COLORS: tuple[BGR, ...] = (
    (20, 20, 20), (40, 40, 40), (200, 200, 200), (150, 150, 150), (230, 230, 230),
    (30, 30, 150), (120, 60, 20), (90, 90, 90), (60, 80, 90), (30, 60, 30),
)  # fmt: skip


def _weathered(img: F32, r: random.Random) -> F32:
    H, W = img.shape[:2]
    if r.random() < 0.6:  # grime: a smooth darkening field
        f = _field(r, H, W, 3, 6)
        img *= (1.0 - r.uniform(0.05, 0.4) * f)[..., None]
    if r.random() < 0.25:  # specks of dirt
        for _ in range(r.randint(3, 25)):
            c = r.uniform(40, 120)
            cv2.circle(
                img, (r.randrange(W), r.randrange(H)), r.randint(1, 3), (c, c * 1.05, c * 1.1), -1
            )
    if r.random() < 0.5:  # a plate holder frame around it
        fc = _jitter(r, r.choice(((25, 25, 25), (50, 50, 50), (180, 180, 180), (20, 20, 40))), 10)
        t = round(r.uniform(0.03, 0.12) * H)
        side = round(r.uniform(0.01, 0.05) * W)
        bottom = round(t * r.uniform(0.8, 2.0))
        img = _f32(cv2.copyMakeBorder(img, t, bottom, side, side, cv2.BORDER_CONSTANT, value=fc))
    return img


def _crop(plate: U8, r: random.Random) -> U8:
    """Warp the plate onto a background, framed as a detector box would cut it."""
    H, W = plate.shape[:2]
    pw = math.exp(r.uniform(math.log(60), math.log(280)))
    k = pw / W
    # corners: perspective (yaw, pitch), rotation, jitter, in output pixels around (0, 0)
    w2, h2 = W * k / 2, H * k / 2
    yaw = r.uniform(-0.18, 0.18) if r.random() < 0.6 else 0.0
    pitch = r.uniform(-0.1, 0.1) if r.random() < 0.4 else 0.0
    pts = np.array(
        [
            [-w2 * (1 - pitch), -h2 * (1 - yaw)],
            [w2 * (1 - pitch), -h2 * (1 + yaw)],
            [w2 * (1 + pitch), h2 * (1 + yaw)],
            [-w2 * (1 + pitch), h2 * (1 - yaw)],
        ],
        np.float32,
    )
    ang = math.radians(r.gauss(0, 3.0) if r.random() < 0.9 else r.uniform(-12, 12))
    shear = r.gauss(0, 0.06)
    ca, sa = math.cos(ang), math.sin(ang)
    rot = np.array([[ca, -sa], [sa, ca]], np.float32) @ np.array([[1, shear], [0, 1]], np.float32)
    pts = pts @ rot.T
    j = 0.025 * h2 * 2
    pts += np.array([[r.uniform(-j, j), r.uniform(-j, j)] for _ in range(4)], np.float32)
    # the box: the plate's bounding box plus a margin (tight, normal, or 2x taller)
    bx0, by0 = pts.min(axis=0)
    bx1, by1 = pts.max(axis=0)
    bw, bh = bx1 - bx0, by1 - by0
    u = r.random()
    if u < 0.25:
        mx, my = (-0.03, 0.05), (-0.04, 0.08)
    elif u < 0.7:
        mx, my = (0.0, 0.12), (0.04, 0.3)
    else:
        mx, my = (0.03, 0.2), (0.25, 0.6)
    ml, mr = r.uniform(*mx) * bw, r.uniform(*mx) * bw
    mt, mb = r.uniform(*my) * bh, r.uniform(*my) * bh
    OW, OH = max(8, round(bw + ml + mr)), max(8, round(bh + mt + mb))
    pts -= np.array([bx0 - ml, by0 - mt], np.float32)
    if k < 0.6:  # shrink (area-averaged) to ~1.5x the target first, so the warp does not alias
        f = 1.5 * k
        size = (max(2, round(W * f)), max(2, round(H * f)))
        plate = _u8(cv2.resize(plate, size, interpolation=cv2.INTER_AREA))
        H, W = plate.shape[:2]
    src = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
    M = cv2.getPerspectiveTransform(src, pts)
    bgra = cv2.cvtColor(plate, cv2.COLOR_BGR2BGRA)
    warped = cv2.warpPerspective(
        bgra, M, (OW, OH), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0)
    )
    # background: car paint with a soft light field, sometimes a bumper edge
    base = np.array(_jitter(r, r.choice(_CAR_COLORS), 25), np.float32)
    bg = np.empty((OH, OW, 3), np.float32)
    bg[:] = base
    bg *= (0.6 + 0.8 * _field(r, OH, OW, 3, 3))[..., None]
    if r.random() < 0.4:
        y = r.randrange(OH)
        bg[y : y + r.randint(1, max(2, OH // 6))] *= r.uniform(0.3, 0.7)
    a = warped[..., 3:4].astype(np.float32) * (1 / 255.0)
    out: F32 = bg + (warped[..., :3].astype(np.float32) - bg) * a
    return _photometric(out, r, 2 * h2)


def _photometric(img: F32, r: random.Random, plate_h: float) -> U8:
    """Light, colour, blur, noise and JPEG; ``plate_h`` is the plate's height in pixels."""
    H, W = img.shape[:2]
    if r.random() < 0.2:  # a hard shadow across
        ang = r.uniform(0, math.pi)
        nx, ny = math.cos(ang), math.sin(ang)
        c = r.uniform(-0.3, 0.3) * (W * abs(nx) + H * abs(ny))
        xs = (np.arange(W, dtype=np.float32) - W / 2) * nx
        ys = (np.arange(H, dtype=np.float32) - H / 2) * ny
        d = ys[:, None] + xs[None, :] - c
        soft = max(1.0, r.uniform(0.5, 4.0))
        s = np.clip(d / soft + 0.5, 0, 1)
        img *= (1 - r.uniform(0.3, 0.6) * s)[..., None]
    if r.random() < 0.3:  # uneven light
        img *= (r.uniform(0.5, 0.9) + r.uniform(0.2, 0.7) * _field(r, H, W, 2, 2))[..., None]
    u = r.random()
    if u < 0.12:  # greyscale camera
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        img = _f32(cv2.merge([g, g, g]))
    elif u < 0.22:  # infrared: grey, often green-tinted like the BR cameras, sometimes inverted
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if r.random() < 0.3:
            g = 255.0 - g
        tint = (r.uniform(0.55, 0.9), 1.0, r.uniform(0.55, 0.9)) if r.random() < 0.6 else (1, 1, 1)
        lift = r.uniform(0, 40)
        img = _f32(
            cv2.merge([g * tint[0] + lift * 0.5, g * tint[1] + lift, g * tint[2] + lift * 0.5])
        )
    else:  # white balance
        img *= np.array([r.uniform(0.93, 1.07) for _ in range(3)], np.float32)
    # exposure and contrast
    c = r.uniform(0.55, 1.25)
    mean = float(img.mean())
    img = (img - mean) * c + mean + r.uniform(-50, 40)
    u = r.random()
    if u < 0.45:
        s = r.uniform(0.2, 1.0) * max(0.5, plate_h / 50)
        img = _f32(cv2.GaussianBlur(img, (0, 0), s))
    elif u < 0.6:  # motion blur
        n = r.choice((3, 5, 7)[: 1 + int(plate_h > 45) + int(plate_h > 90)])
        kern = np.zeros((n, n), np.float32)
        a = r.uniform(0, math.pi)
        dx, dy = math.cos(a) * (n // 2), math.sin(a) * (n // 2)
        cv2.line(
            kern,
            (round(n // 2 - dx), round(n // 2 - dy)),
            (round(n // 2 + dx), round(n // 2 + dy)),
            1.0,
            1,
        )
        img = _f32(cv2.filter2D(img, -1, kern / kern.sum()))
    if r.random() < 0.15:  # low resolution
        f = max(r.uniform(0.35, 0.75), min(1.0, 18 / plate_h))
        small = cv2.resize(
            img, (max(4, round(W * f)), max(4, round(H * f))), interpolation=cv2.INTER_AREA
        )
        img = _f32(cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR))
    if r.random() < 0.75:
        sigma = r.uniform(1.0, 12.0)
        table = _noise_table()
        n = H * W * 3
        off = r.randrange(table.size - n) if n < table.size else 0
        noise = (
            np.resize(table[off : off + n], (H, W, 3))
            if n < table.size
            else np.resize(table, (H, W, 3))
        )
        img = img + noise * sigma
    out: U8 = np.clip(img, 0, 255).astype(np.uint8)
    if r.random() < 0.25:  # gamma
        gamma = r.uniform(0.6, 1.6)
        lut = (np.linspace(0, 1, 256) ** gamma * 255).astype(np.uint8)
        out = _u8(cv2.LUT(out, lut))
    if r.random() < 0.6:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, r.randint(18, 90)])
        if ok:
            out = _u8(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    return out


# --------------------------------------------------------------------------- API


@dataclass(frozen=True)
class SynthPlate:
    image: U8  # BGR uint8, H x W x 3: the crop as a detector would cut it
    text: str  # label, A-Z0-9 only
    region: str  # one of REGIONS
    lines: int  # 1 or 2


class Generator:
    """Synthetic plates. ``sample(i)`` is a pure function of (seed, i, fonts, regions);
    calling the generator yields ``sample(0)``, ``sample(1)``, ..."""

    def __init__(
        self,
        seed: int,
        fonts: Sequence[Path] | None = None,
        regions: Mapping[str, float] | None = None,
    ) -> None:
        self.seed = int(seed)
        self.fonts = [str(p) for p in (find_fonts() if fonts is None else fonts)]
        if not self.fonts:
            raise NoFontsError("Generator needs at least one font (see find_fonts)")
        weights = dict(DEFAULT_WEIGHTS if regions is None else regions)
        unknown = sorted(set(weights) - set(REGIONS))
        if unknown:
            raise ValueError(f"unknown region(s) {unknown}; known: {', '.join(REGIONS)}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"region weights must be >= 0 with a positive sum, got {weights}")
        self.regions = {k: float(v) for k, v in weights.items() if v > 0}
        # per region: its styles and their cumulative weights
        self._region_names = list(self.regions)
        self._region_cum = list(np.cumsum([self.regions[k] for k in self._region_names]))
        self._styles = {k: [s for s in STYLES if s.region == k] for k in self._region_names}
        self._preferred: dict[str, list[str]] = {}
        self._next = 0

    def __call__(self) -> SynthPlate:
        plate = self.sample(self._next)
        self._next += 1
        return plate

    def sample(self, index: int) -> SynthPlate:
        return self.sample_with_info(index)[0]

    def sample_with_info(self, index: int) -> tuple[SynthPlate, PlateInfo]:
        r = random.Random(f"alprd-synth:{self.seed}:{index}")
        region = r.choices(self._region_names, cum_weights=self._region_cum)[0]
        styles = self._styles[region]
        style = r.choices(styles, weights=[s.weight for s in styles])[0]
        fmt = r.choices(style.formats, weights=[f.weight for f in style.formats])[0]
        text, lines = sample_text(fmt, r)
        font = self._font_for(style, r)
        small_font = r.choice(self.fonts)
        flat, extras = _paint(style, fmt, lines, font, small_font, r)
        flat = _weathered(flat, r)
        image = _crop(np.clip(flat, 0, 255).astype(np.uint8), r)
        info = PlateInfo(style.key, fmt, os.path.basename(font), tuple(extras))
        return SynthPlate(image, text, region, len(lines)), info

    def _font_for(self, style: Style, r: random.Random) -> str:
        if style.fonts and r.random() < 0.5:
            preferred = self._preferred.get(style.key)
            if preferred is None:
                names = [(f, os.path.basename(f)) for f in self.fonts]
                preferred = [f for f, n in names if any(p in n for p in style.fonts)]
                self._preferred[style.key] = preferred
            if preferred:
                return r.choice(preferred)
        return r.choice(self.fonts)


# --------------------------------------------------------------------------- I/O

_worker_gen: Generator | None = None


def _write_range(
    args: tuple[Path, int, Sequence[str], Mapping[str, float] | None, int, int, int],
) -> list[tuple[str, str, str]]:
    out_dir, seed, fonts, regions, start, stop, quality = args
    global _worker_gen
    gen = _worker_gen
    if gen is None or gen.seed != seed or gen.fonts != list(fonts):
        gen = _worker_gen = Generator(seed, [Path(f) for f in fonts], regions)
    rows = []
    for i in range(start, stop):
        p = gen.sample(i)
        name = f"synth{i:07d}_{p.text}.jpg"
        ok, buf = cv2.imencode(".jpg", p.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise OSError(f"could not encode {name}")
        (out_dir / name).write_bytes(buf.tobytes())
        rows.append((name, p.text, f"synth-{p.region}"))
    return rows


def write_dataset(
    out_dir: Path,
    n: int,
    seed: int,
    *,
    fonts: Sequence[Path] | None = None,
    regions: Mapping[str, float] | None = None,
    workers: int = 1,
    quality: int = 95,
    chunk: int = 500,
) -> Path:
    """Render plates 0..n-1 of ``seed`` into ``out_dir`` as JPEG, with ``labels.csv``
    (``file,plate,kind``; kind ``synth-<region>``; files relative to ``out_dir``).
    Returns the path of ``labels.csv``. Same output for any number of workers."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    font_list = [str(p) for p in (find_fonts() if fonts is None else fonts)]
    Generator(seed, [Path(f) for f in font_list], regions)  # validate arguments early
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    jobs = [
        (out_dir, seed, font_list, regions, s, min(n, s + chunk), quality)
        for s in range(0, n, chunk)
    ]
    rows: list[tuple[str, str, str]] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            rows += _write_range(job)
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            for part in ex.map(_write_range, jobs):
                rows += part
    labels = out_dir / "labels.csv"
    tmp = labels.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "plate", "kind"])
        w.writerows(rows)
    tmp.replace(labels)
    return labels


CELL_W, CELL_IMG_H, CELL_LABEL_H = 200, 80, 20
CELL_H = CELL_IMG_H + CELL_LABEL_H


def contact_sheet(plates: Sequence[SynthPlate], path: Path, cols: int = 8) -> Path:
    """A PNG grid (``CELL_W`` x ``CELL_H`` per plate, ``min(cols, len)`` columns) with
    each crop and its label and region under it."""
    if not plates:
        raise ValueError("contact_sheet needs at least one plate")
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    cols = min(cols, len(plates))
    rows = math.ceil(len(plates) / cols)
    sheet = np.full((rows * CELL_H, cols * CELL_W, 3), 48, np.uint8)
    for i, p in enumerate(plates):
        cy, cx = divmod(i, cols)
        x, y = cx * CELL_W, cy * CELL_H
        h, w = p.image.shape[:2]
        k = min((CELL_W - 6) / w, (CELL_IMG_H - 4) / h)
        tw, th = max(1, round(w * k)), max(1, round(h * k))
        im = cv2.resize(
            p.image, (tw, th), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
        )
        ox, oy = x + (CELL_W - tw) // 2, y + (CELL_IMG_H - th) // 2
        sheet[oy : oy + th, ox : ox + tw] = im
        cv2.putText(
            sheet,
            f"{p.text}  {p.region}",
            (x + 4, y + CELL_IMG_H + 15),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"could not write {path}")
    return path


def _region_weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        out[k.strip()] = float(v) if v else 1.0
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m alprd.train.synth", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", type=Path, required=True, help="folder for the JPEGs and labels.csv")
    ap.add_argument("--n", type=int, required=True, help="number of plates")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", type=Path, help="also write a contact sheet of the first 64 plates")
    ap.add_argument(
        "--fonts-dir", type=Path, action="append", default=[], help="extra TTF/OTF folder"
    )
    ap.add_argument(
        "--regions",
        type=_region_weights,
        help=f"sampling weights, e.g. eu=2,us=1 (regions: {', '.join(REGIONS)})",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    try:
        fonts = find_fonts(args.fonts_dir)
        labels = write_dataset(
            args.out, args.n, args.seed, fonts=fonts, regions=args.regions, workers=args.workers
        )
    except (NoFontsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} plates and {labels}")
    if args.sheet:
        gen = Generator(args.seed, fonts, args.regions)
        contact_sheet([gen.sample(i) for i in range(min(64, max(1, args.n)))], args.sheet)
        print(f"wrote {args.sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
