"""`make bench-accuracy`: plate reading and detection on the real photos.

- ../shared/data/plates-br (50 photos, one plate each with box and text): exact
  full-plate reads (the read of the plate found at the ground-truth box, after the
  rules), plate detection recall at IoU 0.5, and the recogniser alone on the
  ground-truth boxes (what the OCR can do with a perfect detector).
- ../shared/data/plate-boxes-ro (50 dash-cam frames, boxes only): plate recall at
  IoU 0.5 over every annotated plate.
"""

from __future__ import annotations

import argparse
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
from rich.console import Console
from rich.table import Table

from alprd import config as cfgmod
from alprd import log as logmod
from alprd.pipeline import geometry
from alprd.pipeline.recognizer import Recognizer
from alprd.pipeline.stream import rules_for
from alprd.pipeline.types import Box, Plate

DATA = Path(
    os.environ.get("ALPRD_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def best_match(plates: list[Plate], gt: Box) -> tuple[int, float]:
    ious = [geometry.iou(p.box, gt) for p in plates]
    if not ious:
        return -1, 0.0
    i = max(range(len(ious)), key=lambda k: ious[k])
    return i, ious[i]


def brazil(
    recognizer: Recognizer, config: cfgmod.Config, console: Console
) -> list[tuple[str, str]]:
    folder = DATA / "plates-br"
    rules = {"br": rules_for(config, ["br"]), "none": rules_for(config, [])}
    n = found = found_loose = 0
    exact = {"br": 0, "none": 0}
    ocr_only = {"br": 0, "none": 0}
    errors = []
    for txt in sorted(folder.glob("*.txt")):
        name, x, y, w, h, truth = txt.read_text().strip().split("\t")
        gt = (float(x), float(y), float(x) + float(w), float(y) + float(h))
        image = cv2.imread(str(folder / name))
        n += 1
        result = recognizer(image)
        plates = [p for p, _ in result.plates]
        i, best_iou = best_match(plates, gt)
        found += best_iou >= 0.5
        found_loose += best_iou >= 0.3
        [gt_text] = recognizer.read(image, [Plate(gt, 1.0, None)])
        for key, r in rules.items():
            got = r.apply(result.plates[i][1]) if i >= 0 and best_iou >= 0.3 else None
            exact[key] += bool(got) and got[0].text == truth
            on_gt = r.apply(gt_text)
            ocr_only[key] += bool(on_gt) and on_gt[0].text == truth
            if key == "br" and not (got and got[0].text == truth):
                why = (
                    "no plate at the box"
                    if best_iou < 0.3
                    else f"read {got[0].text if got else None}"
                )
                errors.append((name, f"{truth}: {why} (IoU {best_iou:.2f})"))
    rows = [
        ("BR photos", "plate detection recall @IoU0.5", f"{found}/{n}", f"{found / n:.0%}"),
        (
            "BR photos",
            "plate detection recall @IoU0.3",
            f"{found_loose}/{n}",
            f"{found_loose / n:.0%}",
        ),
        (
            "BR photos",
            "exact reads, rules region=br",
            f"{exact['br']}/{n}",
            f"{exact['br'] / n:.0%}",
        ),
        (
            "BR photos",
            "exact reads, no region rules",
            f"{exact['none']}/{n}",
            f"{exact['none'] / n:.0%}",
        ),
        (
            "BR photos",
            "OCR alone on ground-truth boxes, br",
            f"{ocr_only['br']}/{n}",
            f"{ocr_only['br'] / n:.0%}",
        ),
        (
            "BR photos",
            "OCR alone on ground-truth boxes, none",
            f"{ocr_only['none']}/{n}",
            f"{ocr_only['none'] / n:.0%}",
        ),
    ]
    table = Table(title="accuracy")
    for col in ("set", "measure", "count", "rate"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    romania(recognizer, table)
    console.print(table)
    return errors


def romania(recognizer: Recognizer, table: Table) -> None:
    folder = DATA / "plate-boxes-ro"
    total = hit = loose = 0
    for xml in sorted((folder / "annots").glob("*.xml")):
        root = ET.parse(xml).getroot()
        boxes = [
            tuple(float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr,arg-type]
            for o in root.iter("object")
        ]
        image = cv2.imread(str(folder / "images" / (xml.stem + ".jpg")))
        plates = [p for p, _ in recognizer(image).plates]
        for gt in boxes:
            total += 1
            iou = best_match(plates, gt)[1]  # type: ignore[arg-type]
            hit += iou >= 0.5
            loose += iou >= 0.3
    table.add_row(
        "RO dash-cam", "plate recall @IoU0.5", f"{hit}/{total}", f"{hit / max(1, total):.0%}"
    )
    table.add_row(
        "RO dash-cam", "plate recall @IoU0.3", f"{loose}/{total}", f"{loose / max(1, total):.0%}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config")
    args = parser.parse_args()
    logmod.configure("console", "warning")
    if not (DATA / "plates-br").is_dir():
        print(f"no test data at {DATA}: nothing to measure")
        return 0
    config = cfgmod.load(cfgmod.find_config(args.config).path)
    recognizer = Recognizer.load(config)
    console = Console(width=120)
    errors = brazil(recognizer, config, console)
    for name, why in errors:
        console.print(f"  miss {name}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
