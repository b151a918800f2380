"""Two-line plates in the view the recogniser reads: a crop is read in the view its
aspect suggests, and again the other way when alprd's recogniser says that view is
the wrong one (real engines, the committed recogniser, generated plates)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from alprd import config as cfgmod
from alprd.pipeline.types import Plate
from alprd.train import synth


def variant(config: cfgmod.Config, **ocr: object) -> cfgmod.Config:
    o = config.models.ocr.model_copy(update=ocr)
    return config.model_copy(update={"models": config.models.model_copy(update={"ocr": o})})


@pytest.fixture(scope="module")
def readers():
    """The default recogniser with the view check on and off, and one that reads
    every crop as one line (one engine)."""
    from alprd.pipeline.recognizer import Recognizer

    config = cfgmod.load(cfgmod.find_config().path)
    on = Recognizer.load(config)
    off = Recognizer(variant(config, view_check=False), on.engines)
    one_line = Recognizer(variant(config, view_check=False, two_line_aspect=0.0), on.engines)
    yield on, off, one_line
    on.close()


def plates(lines: int, n: int) -> list:
    gen = synth.Generator(11, regions={"eu": 1.0, "in": 1.0, "us": 1.0, "br": 1.0})
    out = [p for p in (gen.sample(i) for i in range(4000)) if p.lines == lines]
    return out[:n]


def in_box(image: np.ndarray, grow_w: float, grow_h: float) -> tuple[np.ndarray, tuple[float, ...]]:
    """The plate on a grey canvas and a box around it, centred, `grow_w` times its
    width and `grow_h` times its height (as a detector's: a little wider, taller)."""
    h, w = image.shape[:2]
    canvas = cv2.copyMakeBorder(image, h, h, w, w, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    bw, bh, cx, cy = grow_w * w, grow_h * h, 1.5 * w, 1.5 * h
    return canvas, (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)


def rates(readers, samples, grow_w: float, grow_h: float) -> list[float]:
    """Exact reads with the view check, without it, and as one line."""
    ok = [0, 0, 0]
    for s in samples:
        image, box = in_box(s.image, grow_w, grow_h)
        for k, reader in enumerate(readers):
            [text] = reader.read(image, [Plate(box, 1.0, None)])
            ok[k] += text.text == s.text
    return [k / len(samples) for k in ok]


def test_a_two_line_plate_in_a_wide_box_is_read_again_unfolded(readers):
    """A two-line plate wider than ``two_line_aspect`` (a European square plate is
    about 1.4 wide, a Swiss rear one 1.9) is first read as one line; the recogniser
    says so and the plate is read unfolded, top line first."""
    samples = [
        synth.SynthPlate(cv2.resize(p.image, (round(1.6 * p.image.shape[0]), p.image.shape[0])),
                         p.text, p.region, p.lines)
        for p in plates(2, 24)
    ]  # fmt: skip
    with_check, without, _ = rates(readers, samples, 1.05, 1.1)
    assert without < 0.25  # read as one line, two stacked lines are no text
    assert with_check >= 0.6
    assert with_check >= without + 0.4


def test_a_one_line_plate_in_a_tall_box_is_read_again_as_one_line(readers):
    """A one-line plate of about 2:1 (the US, Brazil's old plates) in a box 1.6x its
    height is unfolded first (the box's aspect is below ``two_line_aspect``); the
    recogniser says so and it is read as one line."""
    grow_w, grow_h = 1.05, 1.6
    samples = [
        p for p in plates(1, 400) if grow_w * p.image.shape[1] < 1.3 * grow_h * p.image.shape[0]
    ][:24]  # fmt: skip
    assert len(samples) == 24
    with_check, without, one_line = rates(readers, samples, grow_w, grow_h)
    assert without < 0.2  # unfolded, a one-line plate is no text
    assert with_check >= without + 0.3
    assert with_check >= one_line - 1 / 24  # what reading it as one line gives
