"""Plate rules (pure): format-aware decoding, minimum length, replace rules, known
plates.

A format is a regular expression restricted to a fixed-length sequence of
character classes (``[A-Z]{3}[0-9]{4}``, ``\\d``, ``.``, literal characters, each
optionally followed by ``{n}``: `alprd.plates.parse_format`); `alprd.plates` holds
the library of national formats. For each read the decoder finds the most probable reading that
fits one of the allowed formats: position by position it takes the most probable
character the format allows among the recogniser's candidates (so a ``0`` read
where a letter must be becomes ``O`` if ``O`` was its runner-up), and characters
the format has no room for are dropped, each paying by its own confidence, so a
confident character is kept over a doubtful one. Any number may go at either end
(a country band, a frame edge), at most `MAX_DROPPED_INSIDE` between kept ones (a
crest, a sticker, a stray stroke). A reading scores the sum of the log
probabilities of its characters plus, for each one dropped, the log probability
that no character is there at all (`alprd.pipeline.ocr.presence`: what its
candidates leave).

The read as printed (no change) competes with the formats, handicapped by
``format_margin`` (natural log): a change must be at least exp(-margin) as
probable as what was read, so a plate no format describes (personalised, foreign,
diplomatic) is kept as printed instead of being forced into a format.

The decoder is one dynamic programme over (format position, read position) for
all the formats at once: identical patterns are merged, the rest share their
prefixes in a trie whose nodes are processed together with numpy, one read
position at a time: up to about 0.12 ms a read with the whole world library
on 2 CPU cores. A read whose every character is more probable than not and that
fits a format as read needs no search (nothing can score higher): 0.03 ms on
average over real reads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alprd import plates as library
from alprd.pipeline.ocr import presence, trim_edges
from alprd.pipeline.types import Text
from alprd.plates import CHARSET, Format, levenshtein, parse_format

#: Characters that may be dropped between the first and the last kept one.
MAX_DROPPED_INSIDE = 3
#: The default handicap of the read as printed against a format (natural log):
#: a change must be at least ~1/20 as probable as the read (as [plates]
#: format_margin's default).
DEFAULT_FORMAT_MARGIN = 3.0

_EPSILON = 1e-4
_ALNUM = CHARSET
_INDEX = {c: i for i, c in enumerate(_ALNUM)}
_OTHER = len(_ALNUM)  # the index of a character no class allows


@dataclass(frozen=True)
class Known:
    plate: str
    label: str
    distance: int


class FormatSet:
    """The allowed formats, merged and compiled for decoding.

    Identical patterns (by their character classes) are one format that names
    every region that has it. The formats' class sequences form a trie whose nodes
    are numbered breadth first, so the nodes of one depth are contiguous: node 0
    is the root, ``parent[v]`` and ``cls[v]`` (an index into `classes`) describe
    the others, and ``ends[f]`` is the node where format ``f`` ends."""

    def __init__(self, table: Mapping[str, Sequence[str]], min_length: int = 1) -> None:
        regions_of: dict[Format, set[str]] = {}
        for region, patterns in table.items():
            for pattern in patterns:
                fmt = parse_format(pattern)
                if len(fmt) >= min_length:
                    regions_of.setdefault(fmt, set()).add(region)
        class_ids: dict[frozenset[str], int] = {}
        seqs = [tuple(class_ids.setdefault(c, len(class_ids)) for c in f) for f in regions_of]
        self.classes = list(class_ids)
        self.names = [tuple(sorted(r)) for r in regions_of.values()]
        self.member = np.zeros((len(self.classes), len(_ALNUM) + 1), dtype=bool)
        for k, allowed in enumerate(self.classes):
            for c in allowed:
                if c in _INDEX:
                    self.member[k, _INDEX[c]] = True
        prefixes = sorted(
            {(), *(s[:d] for s in seqs for d in range(1, len(s) + 1))}, key=lambda p: (len(p), p)
        )
        node = {p: i for i, p in enumerate(prefixes)}
        self.parent = np.array([node[p[:-1]] if p else 0 for p in prefixes], dtype=np.intp)
        self.cls = np.array([p[-1] if p else 0 for p in prefixes], dtype=np.intp)
        depth = [len(p) for p in prefixes]
        #: depth_end[d]: one past the last node of depth <= d
        self.depth_end = [sum(1 for x in depth if x <= d) for d in range(max(depth) + 1)]
        self.ends = np.array([node[s] for s in seqs], dtype=np.intp)
        self.size = len(prefixes)
        rows = np.arange(MAX_DROPPED_INSIDE + 1)[:, None] * self.size
        #: per depth d: the parents of the nodes 1 .. depth_end[d] - 1 in every row of
        #: a [MAX_DROPPED_INSIDE + 1, size] array, flattened (one `take` per step)
        self._parents = [(rows + self.parent[None, 1:end]).ravel() for end in self.depth_end]
        by_len: dict[int, list[int]] = {}
        for f, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(f)
        #: per length: the formats' class indices [F, length] and their numbers
        self.by_length = {
            n: (np.array([seqs[f] for f in fs], dtype=np.intp), fs) for n, fs in by_len.items()
        }

    def __len__(self) -> int:
        return len(self.names)

    def regions(self, plate: str) -> tuple[str, ...]:
        """The regions of every format `plate` fits, sorted; the US states only
        where the series common to many states (``us``) does not fit."""
        group = self.by_length.get(len(plate))
        if group is None:
            return ()
        classes, numbers = group
        idx = np.array([_INDEX.get(c, _OTHER) for c in plate], dtype=np.intp)
        fits = self.member[classes, idx].all(axis=1)
        found = {r for f in np.flatnonzero(fits) for r in self.names[numbers[f]]}
        if "us" in found:  # the series common to many states: the states add nothing
            found = {r for r in found if not r.startswith("us-")}
        return tuple(sorted(found))

    def decode(self, text: Text) -> tuple[float, Text] | None:
        """The most probable reading of `text` that fits a format, and its score
        (log probability, see the module's docstring); None if none fits."""
        cands = text.candidates or tuple(
            ((c, p),) for c, p in zip(text.text, text.char_confidences, strict=True)
        )
        n = len(cands)
        if not n or not self.names:
            return None
        width = max(len(o) for o in cands)
        chars = np.full((width, n), _OTHER, dtype=np.intp)
        probs = np.full((width, n), _EPSILON)
        for i, options in enumerate(cands):
            for j, (c, p) in enumerate(options):
                chars[j, i] = _INDEX.get(c, _OTHER)
                probs[j, i] = p
        logp = np.log(np.maximum(probs, _EPSILON))
        # per class and read position: the log probability of the best candidate
        # the class allows (the candidates come best first)
        best = np.full((len(self.classes), n), -np.inf)
        for j in range(width - 1, -1, -1):
            np.copyto(best, logp[j], where=self.member[:, chars[j]])
        gain = best.T[:, self.cls]  # [read position, node]: matching it there
        # dropping a character pays the probability that no character is there at
        # all: what its candidates leave (a B read at 0.48 with 8 at 0.45 is
        # surely a character; a crest read as 8 at 0.7, the rest blank, may not be)
        drop = np.log(np.maximum(1.0 - np.array(presence(text), dtype=float), _EPSILON))
        total = np.cumsum(drop)
        dropping = drop.tolist()
        # dp[i, k, v]: the best score after read positions < i, at node v, with k
        # characters dropped inside; the root holds the characters dropped in front
        rows = MAX_DROPPED_INSIDE + 1
        dp = np.full((n + 1, rows, self.size), -np.inf)
        dp[0, 0, 0] = 0.0
        dp[1:, 0, 0] = total
        last = len(self.depth_end) - 1
        for i in range(n):
            d = min(i + 1, last)
            hi = self.depth_end[d]
            prev, cur = dp[i], dp[i + 1]
            np.add(
                prev.take(self._parents[d]).reshape(rows, hi - 1), gain[i, 1:hi], out=cur[:, 1:hi]
            )
            np.maximum(cur[1:, 1:hi], prev[:-1, 1:hi] + dropping[i], out=cur[1:, 1:hi])
        # each format's end after each read position, what follows it dropped
        ended = dp[1:].max(axis=1)[:, self.ends] + (total[-1] - total)[:, None]
        i, f = divmod(int(ended.argmax()), len(self.ends))
        score = float(ended[i, f])
        if score == -np.inf:
            return None
        # walk back from format f's end after read position i
        v, k, t = int(self.ends[f]), int(dp[i + 1, :, self.ends[f]].argmax()), i + 1
        kept: list[tuple[str, float]] = []
        positions: list[int] = []
        while v:
            if dp[t - 1, k, self.parent[v]] + gain[t - 1, v] == dp[t, k, v]:
                allowed = self.classes[self.cls[v]]
                kept.append(next(o for o in cands[t - 1] if o[0] in _INDEX and o[0] in allowed))
                positions.append(t - 1)
                v = int(self.parent[v])
            else:
                k -= 1
            t -= 1
        kept.reverse()
        positions.reverse()
        return score, Text(
            "".join(c for c, _ in kept),
            tuple(p for _, p in kept),
            tuple(cands[p] for p in positions),
        )


_COMPILED: dict[Any, FormatSet] = {}


def compile_formats(table: Mapping[str, Sequence[str]], min_length: int = 1) -> FormatSet:
    """`FormatSet(table, min_length)`, shared by every caller asking for the same."""
    key = (tuple((r, tuple(p)) for r, p in table.items()), min_length)
    if key not in _COMPILED:
        if len(_COMPILED) >= 32:
            _COMPILED.clear()
        _COMPILED[key] = FormatSet(table, min_length)
    return _COMPILED[key]


class PlateRules:
    def __init__(
        self,
        *,
        formats: Mapping[str, Sequence[str]] | None = None,
        regions: Sequence[str] = ("world",),
        require_format: bool = False,
        format_margin: float = DEFAULT_FORMAT_MARGIN,
        min_length: int = 1,
        min_char_confidence: float = 0.0,
        replace: Sequence[tuple[str, str]] = (),
        known: Mapping[str, str] | None = None,
        known_max_distance: int = 0,
    ) -> None:
        """`regions`: names of the library's regions or groups (`formats`, the
        site's own, add or replace by name); () allows no format. ValueError for
        an unknown name or pattern, or a negative margin."""
        if format_margin < 0:
            raise ValueError(f"format_margin must be >= 0; got {format_margin}")
        self.formats = compile_formats(library.resolve(regions, formats), min_length)
        self.require_format = require_format
        self.format_margin = format_margin
        self.min_length = min_length
        self.min_char_confidence = min_char_confidence
        self.replace = [(re.compile(p), r) for p, r in replace]
        self.known = {k.upper(): v for k, v in (known or {}).items()}
        self.known_max_distance = known_max_distance
        self._format_of: dict[str, str] = {}

    def apply(self, text: Text) -> tuple[Text, str] | None:
        """The read as the rules correct it, with the regions whose format it
        matched (sorted, joined by "/"; "" when read as printed); None when the
        rules reject it. Characters below ``min_char_confidence`` are first
        trimmed off both ends (a band, a frame edge, a plate cut by the frame)."""
        text = trim_edges(text, self.min_char_confidence)
        fitted = False
        if len(self.formats):
            if self._fits_as_read(text):
                fitted = True  # what decoding would give (see `_fits_as_read`), far faster
            else:
                decoded = self.formats.decode(text)
                as_printed = sum(math.log(max(_EPSILON, c)) for c in text.char_confidences)
                if decoded is not None and (
                    self.require_format or decoded[0] >= as_printed - self.format_margin
                ):
                    text, fitted = decoded[1], True
                elif self.require_format:
                    return None
        for pattern, repl in self.replace:
            new = pattern.sub(repl, text.text)
            if new != text.text:
                same = len(new) == len(text.text)
                confs = text.char_confidences if same else (text.confidence,) * len(new)
                text = Text(new, confs, text.candidates if same else ())
        if len(text.text) < self.min_length:
            return None
        return text, self.format_of(text.text) if fitted else ""

    def _fits_as_read(self, text: Text) -> bool:
        """Whether `text` as read (each position's most probable character) fits a
        format while every character is more probable than not: then nothing
        scores higher (another candidate is less probable, and dropping a
        character costs log(1 - presence) <= log(1 - c) < log(c)), so it is the
        decoder's answer."""
        if any(c <= 0.5 for c in text.char_confidences):
            return False
        if text.candidates and any(
            not o or o[0][0] != c for o, c in zip(text.candidates, text.text, strict=True)
        ):
            return False
        return bool(self.format_of(text.text))

    def format_of(self, plate: str) -> str:
        """The regions whose format `plate` fits, sorted and joined by "/" ("it/sk");
        "" when none does."""
        found = self._format_of.get(plate)
        if found is None:
            if len(self._format_of) >= 4096:
                self._format_of.clear()
            found = self._format_of[plate] = "/".join(self.formats.regions(plate))
        return found

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


#: A plate -> the regions whose format it fits ("" for none), as `PlateRules.format_of`.
FormatOf = Callable[[str], str]
