"""The daemon's metrics registry (no server: its exposition text)."""

from prometheus_client import generate_latest

from alprd.observe import Metrics


def test_a_removed_camera_s_series_are_dropped():
    m = Metrics()
    for name in ("gate", "yard"):
        m.frames.labels(name).inc()
        m.dropped.labels(name).set(1)
        m.reads.labels(name).set(2)
        m.events.labels(name).inc()
        m.camera_up.labels(name).set(1)
        m.passes.labels(name).set(1)
        m.reads_held.labels(name).set(3)
    m.forget_camera("gate")
    m.forget_camera("never-there")  # nothing to drop: no error
    text = generate_latest(m.registry).decode()
    assert 'camera="gate"' not in text
    assert text.count('camera="yard"') == 9  # 7 metrics; both counters serve _created too


def test_the_status_file_round_trips_typed_and_reads_other_versions(tmp_path):
    """What the daemon writes is what `alprd status` reads, as typed objects; a file
    from another version (a key more, a key less) still reads."""
    import json

    from alprd.observe import (
        STATUS_FILE,
        CameraStatus,
        EngineStatus,
        Status,
        StatusWriter,
        read_status,
    )

    engine = EngineStatus("openvino", "fp16", "0123456789ab", 2, "/m/best.pt", "abcdef012345",
                          since="2026-12-06T10:00:00Z", served=3)  # fmt: skip
    camera = CameraStatus("streaming", 100, 2, 7, 40, 1, 0)
    writer = StatusWriter(tmp_path)
    writer.last_events.append({"plate": "L417VS", "camera": "gate"})
    writer.write(Status(1, 10.0, 20.0, "serving", {"plate": engine}, {"gate": camera}, {"mqtt": 1}))
    status = read_status(tmp_path)
    assert status is not None
    assert status.engines == {"plate": engine} and status.cameras == {"gate": camera}
    assert status.outbox == {"mqtt": 1} and status.last_events[0]["plate"] == "L417VS"

    data = json.loads((tmp_path / STATUS_FILE).read_text())
    data["cameras"]["gate"]["fps_now"] = 4.5  # a newer daemon's key
    del data["cameras"]["gate"]["still"]  # an older daemon's file
    data["uptime"] = 10
    (tmp_path / STATUS_FILE).write_text(json.dumps(data))
    other = read_status(tmp_path)
    assert other is not None and other.cameras["gate"].still == 0
    assert other.cameras["gate"].processed == 100 and other.engines["plate"].served == 3


def test_each_stage_time_goes_into_the_histogram_once():
    m = Metrics()
    samples = {"plate": [0.01, 0.03]}
    m.observe_stages(samples, {"plate": 2})
    m.observe_stages(samples, {"plate": 2})  # nothing new since
    samples["plate"].append(0.5)
    m.observe_stages(samples, {"plate": 3})
    text = generate_latest(m.registry).decode()
    assert 'alprd_stage_seconds_count{stage="plate"} 3.0' in text
    assert 'alprd_stage_seconds_sum{stage="plate"} 0.54' in text


def test_an_output_whose_backlog_emptied_reads_zero():
    m = Metrics()
    m.observe_outputs({"mqtt": 4}, {"jsonl": 7})
    m.observe_outputs({"mqtt": 0}, {})  # the disk has room again: the backlog went out
    text = generate_latest(m.registry).decode()
    assert 'alprd_outbox_pending{output="mqtt"} 0.0' in text
    assert 'alprd_output_backlog{output="jsonl"} 0.0' in text
