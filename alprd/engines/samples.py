"""Images for calibration (INT8) and validation, and how each role's network sees them.

A calibration set (``--calibration PATH`` / ``engines.calibration``) is a directory
of images (jpg, jpeg, png, bmp; searched recursively, sorted by path) or a YAML
file listing image paths, relative to the YAML file::

    images:
      - cam1/0001.jpg
      - /data/night/0002.png

(a bare YAML list of paths works too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from alprd import ops
from alprd.engines.base import BuildRequest, EngineError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: Width recogniser samples are padded to (dynamic-width engines accept others).
OCR_SAMPLE_WIDTH = 320


def image_list(path: Path) -> tuple[Path, ...]:
    """The images a calibration/validation PATH names; EngineError when none."""
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise EngineError(f"{path}: not valid YAML: {exc}") from None
        items = data.get("images") if isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise EngineError(f"{path}: expected a list of image paths (or images: [...])")
        found = [p if p.is_absolute() else path.parent / p for p in map(Path, items)]
        missing = [str(p) for p in found if not p.is_file()]
        if missing:
            raise EngineError(f"{path}: listed images not found: {', '.join(missing[:5])}")
    elif path.exists():
        raise EngineError(f"{path}: expected a directory of images or a .yaml list")
    else:
        raise EngineError(f"{path}: not found")
    if not found:
        raise EngineError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return tuple(found)


def images_sha256(paths: Iterable[Path]) -> str:
    """One digest over the bytes of every image, in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def load_images(paths: Iterable[Path]) -> list[ops.Image]:
    images, unreadable = readable_images(paths)
    if unreadable:
        raise EngineError(f"{unreadable[0]}: not a readable image")
    return images


def readable_images(paths: Iterable[Path]) -> tuple[list[ops.Image], list[Path]]:
    """The images of `paths` that decode, and the paths that do not (missing,
    empty, cut short)."""
    images: list[ops.Image] = []
    unreadable: list[Path] = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            unreadable.append(p)
        else:
            images.append(img.astype(np.uint8, copy=False))
    return images, unreadable


def preprocess(image: ops.Image, request: BuildRequest) -> npt.NDArray[np.float32]:
    """One image as the role's network input (batch of 1)."""
    shape = request.shape
    if request.kind == "detector":
        assert shape.width is not None
        return ops.letterbox_tensor([ops.fitted(image, shape.height, shape.width)],
                                    shape.height, shape.width)  # fmt: skip
    return recognizer_input(image, shape.height, shape.width or OCR_SAMPLE_WIDTH)


def recognizer_input(image: ops.Image, height: int, width: int) -> npt.NDArray[np.float32]:
    """PP-OCR style: resize to `height` keeping aspect (at most `width`), scale to
    [-1, 1], pad right with zeros to `width`. BGR channel order, NCHW."""
    h, w = image.shape[:2]
    new_w = max(1, min(width, round(w * height / h)))
    resized = cv2.resize(image, (new_w, height)).astype(np.float32)
    out = np.zeros((height, width, 3), np.float32)
    out[:, :new_w] = resized / 255.0 * 2.0 - 1.0
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None])


def synthetic_images(kind: str, n: int = 4, seed: int = 0) -> list[ops.Image]:
    """Deterministic stand-ins when no real samples are configured: a street-like
    scene with plate-like text panels (detectors) or plate-like crops (recogniser).
    Weaker than real frames: configure engines.validation.images for a real check."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        text = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"), 7))
        if kind == "recognizer":
            img = np.full((60, 240, 3), 235, np.uint8)
            cv2.rectangle(img, (2, 2), (237, 57), (20, 20, 20), 2)
            cv2.putText(img, text, (12, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (15, 15, 15), 3)
        else:
            img = np.zeros((480, 640, 3), np.uint8)
            img[:] = np.linspace(60, 180, 640, dtype=np.uint8)[None, :, None]
            x, y = int(rng.integers(80, 400)), int(rng.integers(120, 320))
            cv2.rectangle(img, (x - 60, y - 80), (x + 200, y + 60), (40, 40, 140 + 20 * i), -1)
            cv2.rectangle(img, (x, y), (x + 140, y + 34), (240, 240, 240), -1)
            cv2.putText(img, text, (x + 6, y + 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (10, 10, 10), 2)
        noisy: ops.Image = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        out.append(noisy)
    return out
