"""Logging: journal priority prefix, redaction everywhere, JSON mode, systemd detection."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest
import structlog
from conftest import run_alprd
from structlog.testing import capture_logs

from alprd import log as logmod


@pytest.fixture
def journal() -> io.StringIO:
    stream = io.StringIO()
    assert logmod.configure("journal", "debug", stream=stream) == "journal"
    return stream


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/s1", "rtsp://admin:***@10.0.0.5:554/s1"),
        ("https://TOKEN123@hooks.example/x", "https://***@hooks.example/x"),
        ("rtsp://user:@cam", "rtsp://user:***@cam"),
        (
            "http://cam/snap.jpg?user=a&password=b&x=1",
            "http://cam/snap.jpg?user=a&password=***&x=1",
        ),
        ("https://h/?token=abc", "https://h/?token=***"),
        ("open rtsp://a:b@h1 and rtsp://c:d@h2", "open rtsp://a:***@h1 and rtsp://c:***@h2"),
        ("rtsp://cam.local/stream", "rtsp://cam.local/stream"),
        ("user@example.com wrote", "user@example.com wrote"),
    ],
)
def test_redact(text, expected):
    assert logmod.redact(text) == expected


def test_journal_line_has_priority_prefix_and_fields(journal):
    log = structlog.get_logger("t")
    log.info("engine_loaded", model="plate", backend="openvino", load_s=0.31)
    log.warning("engine_stale", model="plate", reason="source_changed")
    log.error("camera_lost", camera="gate", error="connection refused")
    log.debug("frame_skipped", ok=True, n=None)
    assert journal.getvalue().splitlines() == [
        "<6>engine_loaded model=plate backend=openvino load_s=0.31",
        "<4>engine_stale model=plate reason=source_changed",
        '<3>camera_lost camera=gate error="connection refused"',
        "<7>frame_skipped ok=true n=none",
    ]


def test_journal_traceback_keeps_the_priority_on_every_line(journal):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("build_failed", model="ocr")
    lines = journal.getvalue().splitlines()
    assert lines[0] == "<3>build_failed model=ocr"
    assert len(lines) > 2 and all(line.startswith("<3>  ") for line in lines[1:])
    assert lines[-1] == "<3>  RuntimeError: boom"


def test_level_filter(journal):
    logmod.configure("journal", "warning", stream=journal)
    structlog.get_logger().info("quiet")
    structlog.get_logger().warning("loud")
    assert journal.getvalue() == "<4>loud\n"


# faults: Security: credentials never in logs
@pytest.mark.faults
def test_credentials_redacted_in_our_lines_and_in_library_lines(journal):
    structlog.get_logger().info(
        "camera_opened", url="rtsp://admin:hunter2@cam/1", password="hunter2", fps=5
    )
    logging.getLogger("some.library").error("cannot open rtsp://u:pw@h/x")
    text = journal.getvalue()
    assert "hunter2" not in text and ":pw@" not in text
    assert text.splitlines() == [
        "<6>camera_opened url=rtsp://admin:***@cam/1 password=*** fps=5",
        "<3>cannot open rtsp://u:***@h/x",
    ]


def test_json_mode():
    stream = io.StringIO()
    logmod.configure("json", "info", stream=stream)
    structlog.get_logger().warning("camera_lost", camera="gate", url="rtsp://a:b@h")
    record = json.loads(stream.getvalue())
    assert record["event"] == "camera_lost" and record["level"] == "warning"
    assert record["url"] == "rtsp://a:***@h" and record["camera"] == "gate"
    assert record["timestamp"].endswith("Z")


def test_console_mode_is_plain_without_a_tty():
    stream = io.StringIO()
    logmod.configure("console", "info", stream=stream)
    structlog.get_logger().info("models_fetched", installed=4)
    line = stream.getvalue()
    assert "models_fetched" in line and "installed=4" in line and "\x1b[" not in line


def test_events_are_facts_with_fields():
    """What code emits, before rendering (structlog.testing)."""
    with capture_logs() as logs:
        logmod.get_logger("alprd.x", model="plate").info("engine_loaded", load_s=0.3)
    assert logs == [
        {"event": "engine_loaded", "log_level": "info", "model": "plate", "load_s": 0.3}
    ]


def test_under_systemd_detection(tmp_path):
    with open(tmp_path / "stderr", "w") as f:
        st = os.fstat(f.fileno())
        mine = f"{st.st_dev}:{st.st_ino}"
        assert logmod.under_systemd({"JOURNAL_STREAM": mine}, f)
        assert not logmod.under_systemd({"JOURNAL_STREAM": "1:2"}, f)  # inherited, not ours
        assert logmod.under_systemd({"INVOCATION_ID": "abc"}, f)
        assert not logmod.under_systemd({}, f)
        assert logmod.resolve_format("auto", {"JOURNAL_STREAM": mine}, f) == "journal"
        assert logmod.resolve_format("auto", {}, f) == "console"
        assert logmod.resolve_format("json", {"JOURNAL_STREAM": mine}, f) == "json"


def test_bad_format_or_level_is_rejected():
    with pytest.raises(ValueError, match="log format must be one of"):
        logmod.configure("xml")
    with pytest.raises(ValueError, match="log level must be one of"):
        logmod.configure("auto", "loud")


def test_cli_under_a_systemd_unit_writes_journal_lines():
    """The real entry point with systemd's environment: priority-prefixed lines."""
    proc = run_alprd("models", "fetch", env={"INVOCATION_ID": "0123abcd"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("<6>models_fetched ")


def test_cli_rejects_a_bad_log_format_env():
    proc = run_alprd("models", "list", env={"ALPRD_LOG_FORMAT": "xml"})
    assert proc.returncode == 2
    assert "log format must be one of" in proc.stderr
