"""The labels of a training data folder, audited, and their split.

Label files (`LABEL_FILES`, each read when present): ``labels.csv`` rows
``file,plate,kind`` (Brazil, and the clean renders of kind ``synthetic``);
``labels-us.csv``, kind ``us_<state>``; ``labels-eu.csv``
``file,plate,country,quality,note``, kind ``eu_<country>``, rows of quality ``skip``
left out, a ``two-line`` note marking a two-line plate, quality ``unsure`` a label
that is a guess (trained on, never scored). Labels are audited (`AUDIT`), and split
into train and validation by plate text (`is_validation`).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

#: The label files of a data folder, each read when present: Brazil (with the clean
#: renders), the US, Europe.
LABEL_FILES = ("labels.csv", "labels-us.csv", "labels-eu.csv")


def region_of(kind: str) -> str:
    """The region a crop's kind belongs to: ``us``, ``eu``, or ``br`` (the Brazilian
    cameras and renders); a generated plate's own region (``synth:<region>``)."""
    if kind.startswith("synth:"):
        return kind.split(":", 1)[1]
    if kind.startswith(("us_", "eu_")) or kind in ("us", "eu"):
        return kind[:2]
    return "br"


def clean(text: str) -> str:
    """Upper case, A-Z and 0-9 only (how plate text is compared everywhere)."""
    return "".join(c for c in text.upper() if c.isascii() and c.isalnum())


def is_validation(plate: str, fraction: float = 0.2) -> bool:
    """Whether a plate string belongs to the validation split: a fixed hash, so every
    crop of one plate lands on the same side, on any machine."""
    digest = hashlib.sha256(clean(plate).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


#: Labels of the given data that disagree with what the image shows, each checked by
#: eye (``dataset,file,labelled,corrected,why``): applied by `read_labels`, reported
#: beside the labels as given by ``make bench-accuracy``.
AUDIT = Path(__file__).with_name("label_audit.csv")


#: The corrected label of an audit row whose image cannot decide between readings
#: (a vanity plate whose font draws 0 and O alike): the crop is trained on as
#: labelled but never scored.
UNDECIDED = "?"
#: The corrected label of an audit row whose crop shows no readable plate (or not
#: the labelled one, unreadably): left out.
UNREADABLE = "-"


def _corrected(text: str) -> str:
    text = text.strip()
    return text if text in (UNDECIDED, UNREADABLE) else clean(text)


def corrections(dataset: str, audit: Path | None = None) -> dict[str, tuple[str, str]]:
    """file -> (label as given, corrected label, `UNDECIDED` or `UNREADABLE`) for one
    dataset (the folder's name: ``ocr-train``, ``plates-br``) from `audit` (default
    `AUDIT`)."""
    with (audit or AUDIT).open(newline="", encoding="utf-8") as f:
        return {
            row["file"]: (clean(row["labelled"]), _corrected(row["corrected"]))
            for row in csv.DictReader(f)
            if row["dataset"] == dataset
        }


def audited_label(fixes: dict[str, tuple[str, str]], file: str, given: str) -> str:
    """The label of `file` after `corrections`: the corrected one when the audit was
    made on this very label, else the label as given."""
    was, fixed = fixes.get(file, (given, given))
    return fixed if was == given else given


class Label(NamedTuple):
    """One labelled crop of a data folder."""

    path: Path
    plate: str  # A-Z0-9 only
    kind: str  # camera_CC, synthetic, us_<state>, eu_<country>
    lines: int = 1  # 2: a two-line plate (top line first in `plate`)
    sure: bool = True  # False: a character of the label is a guess (never scored)


def _label(row: dict[str, str]) -> tuple[str, int, bool] | None:
    """(kind, lines, sure) of a row of any of `LABEL_FILES`; None for a row to leave
    out (quality ``skip``: no readable text)."""
    if "country" not in row:  # file,plate,kind
        return row["kind"], 1, True
    quality = row.get("quality", "ok")
    if quality == "skip" or not clean(row["plate"]):
        return None
    lines = 2 if "two-line" in row.get("note", "") else 1
    return f"eu_{row['country'].lower()}" if row["country"] else "eu", lines, quality == "ok"


def read_labels(data: Path, audited: bool = True) -> list[Label]:
    """One `Label` per row of each of `LABEL_FILES` in `data` whose image exists;
    ``audited``: with the corrections of `AUDIT` for this folder (a correction whose
    label as given differs from the row's is for other data and left out)."""
    fixes = corrections(data.name) if audited else {}
    rows = []
    for name in LABEL_FILES:
        if not (data / name).is_file():
            continue
        with (data / name).open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                path, described = data / row["file"], _label(row)
                if described is None or not path.is_file():
                    continue
                given = clean(row["plate"])
                plate = audited_label(fixes, row["file"], given)
                kind, lines, sure = described
                if plate == UNREADABLE:
                    continue
                if plate == UNDECIDED:  # the image cannot decide: trained on, not scored
                    plate, sure = given, False
                rows.append(Label(path, plate, kind, lines, sure))
    return rows


def split_rows(
    rows: Sequence[Label], val_fraction: float
) -> tuple[list[Label], list[Label], list[Label]]:
    """(real train, real validation, renders): real rows split by plate text; renders
    of a validation plate are dropped, and so are validation crops whose label is a
    guess (``sure`` false: trained on when on the training side, never scored)."""
    val_plates = {
        r.plate for r in rows if r.kind != "synthetic" and is_validation(r.plate, val_fraction)
    }
    train = [r for r in rows if r.kind != "synthetic" and r.plate not in val_plates]
    val = [r for r in rows if r.kind != "synthetic" and r.plate in val_plates and r.sure]
    rendered = [r for r in rows if r.kind == "synthetic" and r.plate not in val_plates]
    return train, val, rendered
