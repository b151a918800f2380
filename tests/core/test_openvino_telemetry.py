"""OpenVINO's telemetry is declined by alprd itself (its units run no
``opt_in_out`` before the daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alprd.engines.backends._telemetry import opt_out


def test_the_consent_file_says_declined_in_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert opt_out()
    assert (tmp_path / "intel" / "openvino_telemetry").read_text() == "0"
    assert opt_out()  # already declined: left as it is
    assert sorted(p.name for p in (tmp_path / "intel").iterdir()) == ["openvino_telemetry"]
