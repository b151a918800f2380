"""What leaves the daemon of a plate it does not know (`privacy.hash_plates`): a
keyed hash (`alprd.hashing.plate_hash`) instead of the text, in the store, every
other output and the journal. Plates on the known list or a plate list stay
readable: a site keeps them to act on them."""

from __future__ import annotations

from dataclasses import replace

from alprd.hashing import make_key, plate_hash, read_key
from alprd.pipeline.types import PlateEvent
from alprd.settings.outputs import PrivacyConfig


class Concealer:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def __call__(self, event: PlateEvent) -> PlateEvent:
        """`event` with its plate, and every text its reads gave, hashed, unless
        the plate is a known one or on a plate list."""
        if event.known_label is not None or event.list_name is not None:
            return event
        texts = tuple(replace(t, text=self.hash(t.text)) for t in event.texts)
        return replace(event, plate=self.hash(event.plate), texts=texts)

    def hash(self, plate: str) -> str:
        return plate_hash(self.key, plate)

    @classmethod
    def for_daemon(cls, privacy: PrivacyConfig) -> Concealer | None:
        """The daemon's: None with hashing off; the key is made at the first start
        (OSError where it cannot be: the daemon must not store plates in clear)."""
        return cls(make_key(privacy.key_file)) if privacy.hash_plates else None

    @classmethod
    def for_reader(cls, privacy: PrivacyConfig) -> Concealer | None:
        """A reader's (the web, `alprd reads`), to search a plate by its hash: None
        with hashing off or where no key was made (nothing hashed yet) or the key
        cannot be read (OSError, ValueError say why)."""
        if not privacy.hash_plates:
            return None
        key = read_key(privacy.key_file)
        return None if key is None else cls(key)
