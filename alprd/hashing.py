"""SHA-256 of files, for the model downloader and the engine cache, and the keyed
plate hash of `privacy.hash_plates` (standard library only)."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

#: What a hashed plate starts with: no plate does, so the two never meet.
HASH_MARK = "#"
KEY_BYTES = 32


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plate_hash(key: bytes, plate: str) -> str:
    """The keyed hash a store keeps instead of `plate` (HMAC-SHA-256, 64 bits as 16
    hex digits after `HASH_MARK`): the same plate and key give the same hash, so an
    exact search still finds it; without the key it cannot be tried plate by plate."""
    return HASH_MARK + hmac.new(key, plate.encode(), hashlib.sha256).hexdigest()[:16]


def read_key(path: Path) -> bytes | None:
    """The plate-hash key in `path` (hex), or None where there is none (yet)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ValueError(f"{path}: not a plate-hash key (hex, {KEY_BYTES} bytes); delete it "
                         "to have a new one made (stored hashes then no longer match)")  # fmt: skip
    return key


def make_key(path: Path) -> bytes:
    """The key in `path`, created first (random, readable by its owner only) where
    there is none."""
    key = read_key(path)
    if key is not None:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(KEY_BYTES)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return key
