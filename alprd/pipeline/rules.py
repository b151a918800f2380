"""Plate rules (pure): formats per region, minimum length, replace rules, known
plates.

A format is a regular expression restricted to a fixed-length sequence of
character classes (``[A-Z]{3}[0-9]{4}``, ``\\d``, ``.``, literal characters, each
optionally followed by ``{n}``): the reader then picks, position by position,
the most probable character the format allows among the recogniser's candidates
(so a ``0`` read where a letter must be becomes ``O`` if ``O`` was its runner-up).
When a read is longer than a format, the characters left out may be anywhere (a
country band or a frame edge at the ends; a seal, a sticker or a stray stroke read as
a character inside): the best choice of the format's length is taken, each
character dropped paying by its own confidence, so a confident character is kept
over a doubtful one.
"""

from __future__ import annotations

import itertools
import math
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from alprd.pipeline.ocr import trim_edges
from alprd.pipeline.types import Text

Format = tuple[frozenset[str], ...]

#: Formats alprd knows by region name; [plates.formats] adds to or replaces them.
BUILTIN_FORMATS: dict[str, tuple[str, ...]] = {
    # Brazil: grey/red LLL-NNNN and Mercosur LLLNLNN.
    "br": ("[A-Z]{3}[0-9]{4}", "[A-Z]{3}[0-9][A-Z][0-9]{2}"),
}

_TOKEN = re.compile(r"\[(?P<cls>[^\]]+)\]|\\(?P<esc>[dw])|(?P<dot>\.)|(?P<lit>[A-Za-z0-9])")
_COUNT = re.compile(r"\{(\d+)\}")
_EPSILON = 1e-4
#: Reads longer than a format by more than this are only cut to windows (the
#: choices of characters to drop grow combinatorially).
_MAX_DROPPED = 3


def parse_format(pattern: str) -> Format:
    """``[A-Z]{3}[0-9]{4}`` -> one allowed set per position. ValueError if the
    pattern is not a fixed-length sequence of classes."""
    out: list[frozenset[str]] = []
    pos = 0
    while pos < len(pattern):
        m = _TOKEN.match(pattern, pos)
        if not m:
            raise ValueError(
                f"format {pattern!r}: unsupported at {pattern[pos:]!r}; use character "
                "classes like [A-Z], [0-9], \\d, . or letters/digits, each optionally {n}"
            )
        pos = m.end()
        allowed = _expand(m)
        count = 1
        c = _COUNT.match(pattern, pos)
        if c:
            count, pos = int(c.group(1)), c.end()
        out += [allowed] * count
    if not out:
        raise ValueError(f"format {pattern!r} is empty")
    return tuple(out)


def _expand(m: re.Match[str]) -> frozenset[str]:
    alnum = string.ascii_uppercase + string.digits
    if m.group("dot"):
        return frozenset(alnum)
    if m.group("esc"):
        return frozenset(string.digits if m.group("esc") == "d" else alnum)
    if m.group("lit"):
        return frozenset(m.group("lit").upper())
    spec, chars = m.group("cls"), set()
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            chars |= {chr(c) for c in range(ord(spec[i]), ord(spec[i + 2]) + 1)}
            i += 3
        else:
            chars.add(spec[i])
            i += 1
    return frozenset(chars)


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@dataclass(frozen=True)
class Known:
    plate: str
    label: str
    distance: int


class PlateRules:
    def __init__(
        self,
        *,
        formats: Mapping[str, Sequence[str]] | None = None,
        regions: Sequence[str] = (),
        require_format: bool = True,
        min_length: int = 1,
        min_char_confidence: float = 0.0,
        replace: Sequence[tuple[str, str]] = (),
        known: Mapping[str, str] | None = None,
        known_max_distance: int = 0,
    ) -> None:
        table = {**BUILTIN_FORMATS, **(formats or {})}
        unknown = [r for r in regions if r not in table]
        if unknown:
            raise ValueError(
                f"unknown region(s) {', '.join(unknown)}; known: {', '.join(sorted(table))}"
            )
        self.formats = [(r, parse_format(p)) for r in regions for p in table[r]]
        self.require_format = require_format
        self.min_length = min_length
        self.min_char_confidence = min_char_confidence
        self.replace = [(re.compile(p), r) for p, r in replace]
        self.known = {k.upper(): v for k, v in (known or {}).items()}
        self.known_max_distance = known_max_distance

    def apply(self, text: Text) -> tuple[Text, str] | None:
        """The read as the rules correct it, with the region whose format matched
        ("" when none did); None when the rules reject it. With formats, the best
        choice of the format's length is taken (dropping low-confidence characters
        costs little); otherwise, or when no format fits and none is required,
        characters below ``min_char_confidence`` are trimmed off both ends."""
        region = ""
        best = self._best_format(text) if self.formats else None
        if best is not None:
            text, region = best
        elif self.formats and self.require_format:
            return None
        else:
            text = trim_edges(text, self.min_char_confidence)
        for pattern, repl in self.replace:
            new = pattern.sub(repl, text.text)
            if new != text.text:
                same = len(new) == len(text.text)
                confs = text.char_confidences if same else (text.confidence,) * len(new)
                text = Text(new, confs, text.candidates if same else ())
        if len(text.text) < self.min_length:
            return None
        return text, region

    def _best_format(self, text: Text) -> tuple[Text, str] | None:
        cands = text.candidates or tuple(
            ((c, p),) for c, p in zip(text.text, text.char_confidences, strict=True)
        )
        best: tuple[float, Text, str] | None = None
        n_read = len(cands)
        drop_cost = [math.log(max(_EPSILON, 1.0 - c)) for c in text.char_confidences]
        for region, fmt in self.formats:
            # the best allowed character of each format position at each read position
            picks = [[_pick(allowed, options) for options in cands] for allowed in fmt]
            for keep in _kept(n_read, len(fmt)):
                kept = set(keep)
                score = sum(cost for i, cost in enumerate(drop_cost) if i not in kept)
                chosen = [picks[j][i] for j, i in enumerate(keep)]
                for _, p in chosen:
                    score += math.log(max(_EPSILON, p))
                if best is None or score > best[0]:
                    chars, confs = zip(*chosen, strict=True)
                    fixed = Text("".join(chars), confs, tuple(cands[i] for i in keep))
                    best = (score, fixed, region)
        if best is None or min(best[1].char_confidences) <= _EPSILON:
            return None  # a position had no allowed candidate at all
        return best[1], best[2]

    def known_match(self, plate: str) -> Known | None:
        """The closest known plate within `known_max_distance`, if any."""
        if plate in self.known:
            return Known(plate, self.known[plate], 0)
        best = None
        for known, label in self.known.items():
            d = levenshtein(plate, known)
            if d <= self.known_max_distance and (best is None or d < best.distance):
                best = Known(known, label, d)
        return best


def _pick(allowed: frozenset[str], options: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The most probable candidate a format position allows (candidates come best
    first), or a placeholder with `_EPSILON` when it allows none of them."""
    return next(((c, p) for c, p in options if c in allowed), (min(allowed), _EPSILON))


def _kept(n_read: int, n: int) -> Iterator[tuple[int, ...]]:
    """The index sets of `n` characters a read of `n_read` may be cut to, in order:
    any `n` of them when at most `_MAX_DROPPED` go, else the windows."""
    if n_read - n > _MAX_DROPPED:
        for offset in range(n_read - n + 1):
            yield tuple(range(offset, offset + n))
    elif n_read >= n:
        yield from itertools.combinations(range(n_read), n)
