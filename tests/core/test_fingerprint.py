"""Fingerprint (pure): every input that changes an artefact changes the digest and
is named as the reason; nothing else does."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alprd.engines import fingerprint as fp

BASE = fp.FingerprintInputs(
    source_sha256="a" * 64,
    role="plate",
    input_shape=(1, 3, 416, 416),
    precision="fp16",
    backend="tensorrt",
    runtime_version="10.3.0",
    device={"gpu": "Orin", "compute_capability": "8.7", "cuda": "12", "driver_major": "540"},
    backend_settings={"workspace_gb": "2"},
    calibration_sha256=None,
    engine_format=1,
)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"source_sha256": "b" * 64}, "source_changed"),
        ({"input_shape": (1, 3, 320, 320)}, "input_shape_changed"),
        ({"input_shape": (4, 3, 416, 416)}, "input_shape_changed"),
        ({"input_shape": (1, 3, 48, None)}, "input_shape_changed"),
        ({"precision": "int8"}, "precision_changed"),
        ({"backend": "openvino"}, "backend_changed"),
        ({"runtime_version": "10.4.0"}, "runtime_changed"),
        ({"device": {**BASE.device, "gpu": "RTX 4090"}}, "device_changed"),
        ({"device": {**BASE.device, "driver_major": "550"}}, "device_changed"),
        ({"backend_settings": {"workspace_gb": "4"}}, "build_settings_changed"),
        ({"calibration_sha256": "c" * 64}, "calibration_changed"),
        ({"engine_format": 2}, "engine_format_changed"),
        ({"role": "vehicle"}, "role_changed"),
    ],
)
def test_each_input_changes_the_digest_and_names_itself(change, reason):
    changed = replace(BASE, **change)
    assert fp.fingerprint(changed) != fp.fingerprint(BASE)
    assert fp.reasons(BASE.as_dict(), changed) == [reason]


def test_same_inputs_same_digest_whatever_the_dict_order():
    reordered = replace(BASE, device=dict(reversed(list(BASE.device.items()))))
    assert fp.fingerprint(reordered) == fp.fingerprint(BASE)
    assert fp.reasons(BASE.as_dict(), reordered) == []


def test_several_changes_are_all_reported_in_order():
    changed = replace(BASE, source_sha256="b" * 64, precision="fp32", runtime_version="11")
    assert fp.reasons(BASE.as_dict(), changed) == [
        "source_changed",
        "precision_changed",
        "runtime_changed",
    ]


def test_a_sidecar_from_another_format_is_stale():
    stored = BASE.as_dict()
    stored["new_field_from_the_future"] = 1
    assert fp.reasons(stored, BASE) == ["engine_format_changed"]
    assert fp.reasons({}, BASE)[:2] == ["source_changed", "role_changed"]
