"""Calibration / validation image sets: a directory or a YAML list, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from alprd.engines import samples
from alprd.engines.base import EngineError


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "calib"
    (folder / "night").mkdir(parents=True)
    for name in ("b.jpg", "a.png", "night/c.JPG"):
        cv2.imwrite(str(folder / name), np.zeros((8, 8, 3), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_directory_is_searched_recursively_and_sorted(images):
    assert [p.relative_to(images).as_posix() for p in samples.image_list(images)] == [
        "a.png",
        "b.jpg",
        "night/c.JPG",
    ]


@pytest.mark.parametrize(
    "text", ["images:\n  - a.png\n  - night/c.JPG\n", "- a.png\n- night/c.JPG\n"]
)
def test_a_yaml_list_is_relative_to_the_yaml_file(images, text):
    listing = images / "set.yaml"
    listing.write_text(text)
    assert samples.image_list(listing) == (images / "a.png", images / "night" / "c.JPG")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "absent", "not found"),
        (lambda d: (d / "e").mkdir() or d / "e", "no images"),
        (
            lambda d: (d / "x.yaml").write_text("images: [missing.jpg]") and d / "x.yaml",
            "listed images not found",
        ),
        (lambda d: (d / "y.yaml").write_text("images: 3") and d / "y.yaml", "expected a list"),
        (lambda d: (d / "z.yaml").write_text("a: [") and d / "z.yaml", "not valid YAML"),
        (lambda d: (d / "f.txt").write_text("x") and d / "f.txt", "expected a directory of images"),
    ],
)
def test_bad_sets_are_clear_errors(tmp_path, setup, message):
    with pytest.raises(EngineError, match=message):
        samples.image_list(setup(tmp_path))


def test_an_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(EngineError, match=r"broken\.jpg: not a readable image"):
        samples.load_images([bad])


def test_recognizer_input_keeps_aspect_and_pads():
    x = samples.recognizer_input(np.full((30, 60, 3), 255, np.uint8), 48, 320)
    assert x.shape == (1, 3, 48, 320)
    assert x[0, :, :, :96].min() == pytest.approx(1.0) and x[0, :, :, 96:].max() == 0.0
