"""What an engine depends on, as one digest (pure; no I/O).

An engine is current when the fingerprint stored in its sidecar equals the one
computed now. When they differ, `reasons` names what changed, one word each, for
the log line (``engine_stale model=plate reason=source_changed``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FingerprintInputs:
    source_sha256: str
    role: str
    input_shape: tuple[int | None, ...]  # batch, channels, height, width (None = dynamic)
    precision: str
    backend: str
    runtime_version: str
    device: Mapping[str, str] = field(default_factory=dict)
    #: Settings that change the artefact only for some backends (TensorRT workspace).
    backend_settings: Mapping[str, str] = field(default_factory=dict)
    calibration_sha256: str | None = None  # int8 only
    engine_format: int = 1

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["device"] = dict(sorted(self.device.items()))
        d["backend_settings"] = dict(sorted(self.backend_settings.items()))
        return d


def fingerprint(inputs: FingerprintInputs) -> str:
    """sha256 of the canonical JSON of `inputs`."""
    canonical = json.dumps(inputs.as_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


#: Field -> reason word in logs.
_REASONS = {
    "source_sha256": "source_changed",
    "role": "role_changed",
    "input_shape": "input_shape_changed",
    "precision": "precision_changed",
    "backend": "backend_changed",
    "runtime_version": "runtime_changed",
    "device": "device_changed",
    "backend_settings": "build_settings_changed",
    "calibration_sha256": "calibration_changed",
    "engine_format": "engine_format_changed",
}


def reasons(stored: Mapping[str, Any], current: FingerprintInputs) -> list[str]:
    """Why an engine built from `stored` inputs is not current, in field order;
    empty when nothing that matters changed."""
    now = current.as_dict()
    out = [word for key, word in _REASONS.items() if stored.get(key) != now[key]]
    return out or ([] if set(stored) == set(now) else ["engine_format_changed"])
