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
