"""Outputs with real parts: SQLite files, JSONL files, an HTTP server in a thread, a real
mosquitto broker (skipped when the binary is absent) and the durable outbox."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from conftest import REPO
from paho.mqtt.enums import CallbackAPIVersion
from structlog.testing import capture_logs
from support.servers import MOSQUITTO, Broker, free_port, wait_until

from alprd.pipeline.types import Plate, PlateEvent, PlateRead, Text, TextVote, Vehicle
from alprd.sinks.base import SinkError, event_to_dict, iso_utc
from alprd.sinks.jsonl import JsonlSink
from alprd.sinks.mqtt import MqttSink
from alprd.sinks.outbox import Outbox, Retry
from alprd.sinks.sqlite import SqliteSink
from alprd.sinks.webhook import WebhookSink

T0 = 1714564800.0  # 2024-05-01T12:00:00Z
FAST = Retry(initial_s=0.05, max_s=0.2)


def event(i: int, camera: str = "gate", plate: str | None = None, t: float = T0) -> PlateEvent:
    return PlateEvent(
        camera=camera,
        plate=plate or f"ABC{i:04d}",
        confidence=0.91234567,
        char_confidences=(0.9, 0.95, 0.99, 0.8, 0.85, 0.9, 0.97),
        first_seen=t + i,
        last_seen=t + i + 1.5,
        first_frame=10 * i,
        last_frame=10 * i + 7,
        plate_box=(10.04, 20.0, 110.0, 50.0),
        vehicle_box=(0.0, 0.0, 300.0, 200.0),
        vehicle_class="car",
        reads=7,
        track_id=i,
    )


#: the read `event`'s boxes come from (what a snapshot keeps with its image)
READ = PlateRead(
    Plate((10.04, 20.0, 110.0, 50.0), 0.9, Vehicle((0.0, 0.0, 300.0, 200.0), 0.8, "car")),
    Text("ABC0000", (0.9,) * 7, ()), 0, 0.0,
)  # fmt: skip


def record(i: int, **kw: Any) -> dict[str, Any]:
    return event_to_dict(event(i, **kw), f"ev-{i:04d}")


# --------------------------------------------------------------------------- record


@pytest.mark.parametrize(
    ("t", "iso"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (T0, "2024-05-01T12:00:00.000Z"),
        (T0 + 0.1234, "2024-05-01T12:00:00.123Z"),
    ],
)
def test_iso_utc(t: float, iso: str) -> None:
    assert iso_utc(t) == iso


def test_event_to_dict_is_json_ready() -> None:
    ev = PlateEvent(
        camera="yard",
        plate="AYO9034",
        confidence=0.97,
        char_confidences=(0.9, 1.0),
        first_seen=T0,
        last_seen=T0 + 2.25,
        first_frame=1,
        last_frame=9,
        plate_box=(1.0, 2.0, 3.0, 4.0),
        vehicle_box=None,
        vehicle_class=None,
        reads=3,
        track_id=4,
        known_label="staff",
        known_plate="AYO9O34",
        format="br",
        texts=(TextVote("AYO9034", 2, 0.98), TextVote("AY09034", 1, 0.7)),
    )
    rec = event_to_dict(ev, "id-1")
    assert json.loads(json.dumps(rec)) == rec
    assert rec == {
        "id": "id-1",
        "camera": "yard",
        "plate": "AYO9034",
        "confidence": 0.97,
        "char_confidences": [0.9, 1.0],
        "first_seen": "2024-05-01T12:00:00.000Z",
        "last_seen": "2024-05-01T12:00:02.250Z",
        "plate_box": [1.0, 2.0, 3.0, 4.0],
        "vehicle_box": None,
        "vehicle_class": None,
        "reads": 3,
        "known_label": "staff",
        "known_plate": "AYO9O34",
        "format": "br",
        "texts": [
            {"text": "AYO9034", "reads": 2, "confidence": 0.98},
            {"text": "AY09034", "reads": 1, "confidence": 0.7},
        ],
        "decision": "",
        "list": None,
        "list_plate": None,
        "list_label": None,
        "list_distance": None,
        "direction": "unknown",
        "snapshots": [],
    }


# --------------------------------------------------------------------------- sqlite


def test_sqlite_round_trip_filters_wal_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "state" / "reads.db"
    db = SqliteSink(path)
    rows = [
        record(0, camera="gate", plate="ABC1234"),
        record(1, camera="yard", plate="ABD1234"),
        record(2, camera="gate", plate="XYZ9876"),
        record(3, camera="yard", plate="ABC9999"),
    ]
    for r in rows:
        db.write(r)
    db.write(rows[0])  # idempotent on id

    assert db.query() == rows[::-1]  # round trip, newest first
    assert [r["id"] for r in db.query(plate_pattern="ABC*")] == ["ev-0003", "ev-0000"]
    assert [r["id"] for r in db.query(plate_pattern="ab?1234")] == ["ev-0001", "ev-0000"]
    assert [r["id"] for r in db.query(camera="gate")] == ["ev-0002", "ev-0000"]
    assert [r["id"] for r in db.query(since=T0 + 1, until=T0 + 3)] == ["ev-0002", "ev-0001"]
    assert [r["id"] for r in db.query(camera="yard", plate_pattern="*9")] == ["ev-0003"]
    assert [r["id"] for r in db.query(limit=1)] == ["ev-0003"]
    assert db.query(plate_pattern="[A]*") == []  # '[' is literal, not a class
    db.close()

    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(4,)]
    assert raw.execute("SELECT count(*) FROM reads").fetchone() == (4,)
    indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"reads_plate", "reads_camera_seen", "reads_first_seen"} <= indexes
    raw.close()

    with capture_logs() as logs:
        again = SqliteSink(path)  # reopening keeps the data and migrates nothing
    assert len(again.query()) == 4
    assert not [e for e in logs if e["event"] == "sqlite_migrated"]
    again.close()


def test_sqlite_migrates_a_version_1_file_to_the_format_column(tmp_path: Path) -> None:
    """A store written before events had a format (schema 1) is migrated on open:
    its events read back with format "", new ones with theirs, in the column too."""
    from alprd.sinks.sqlite import MIGRATIONS, migrate, open_db

    path = tmp_path / "reads.db"
    old = record(0, plate="ABC1234")
    del old["format"]
    conn = open_db(path)
    assert migrate(conn, MIGRATIONS[:1], path) == (0, 1)
    conn.execute(
        "INSERT INTO reads (id, camera, plate, confidence, first_seen, last_seen, known_label,"
        " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (old["id"], "gate", "ABC1234", 0.9, T0, T0 + 1, None, json.dumps(old)),
    )
    conn.close()

    with capture_logs() as logs:
        db = SqliteSink(path)
    assert [
        (e["from_version"], e["to_version"]) for e in logs if e["event"] == "sqlite_migrated"
    ] == [(1, 4)]
    new = event_to_dict(
        PlateEvent(**{**event(1).__dict__, "plate": "RK099AN", "format": "hr/sk"}), "ev-0001"
    )
    db.write(new)
    assert [(r["plate"], r["format"]) for r in db.query()] == [
        ("RK099AN", "hr/sk"),
        ("ABC1234", ""),
    ]
    assert db.query()[1] == {**old, "format": ""}
    db.close()
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT plate, format FROM reads ORDER BY first_seen").fetchall() == [
        ("ABC1234", ""),
        ("RK099AN", "hr/sk"),
    ]
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(4,)]
    assert raw.execute("SELECT COUNT(*) FROM gate_actions").fetchone() == (0,)  # the gate's
    # the plates stored before the trigram index are in it, and so are new ones
    found = "SELECT plate FROM reads_trigram WHERE plate GLOB ? ORDER BY plate"
    assert raw.execute(found, ("*C12*",)).fetchall() == [("ABC1234",)]
    assert raw.execute(found, ("*099*",)).fetchall() == [("RK099AN",)]
    raw.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "reads.db"
    SqliteSink(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(SinkError, match="schema version 99 is newer"):
        SqliteSink(path)


# --------------------------------------------------------------------------- jsonl


def test_jsonl_one_flushed_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "state" / "reads.jsonl"
    sink = JsonlSink(path)
    for i in range(3):
        sink.write(record(i))
        # readable by another reader at once: flushed, not buffered
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(x)["id"] for x in lines] == [f"ev-{j:04d}" for j in range(i + 1)]
    sink.close()
    with pytest.raises(SinkError, match="closed"):
        sink.write(record(9))
    JsonlSink(path).write(record(3))  # reopening appends
    assert len(path.read_text(encoding="utf-8").splitlines()) == 4


def test_jsonl_rotates_by_size_and_keeps_n(tmp_path: Path) -> None:
    path = tmp_path / "reads.jsonl"
    max_mb = 2000 / (1024 * 1024)  # 2000 bytes
    line_len = len(json.dumps(record(0), separators=(",", ":"))) + 1
    sink = JsonlSink(path, max_mb=max_mb, keep=2)
    n = 40
    for i in range(n):
        sink.write(record(i))
    sink.close()

    files = [path.with_name(f"{path.name}.2"), path.with_name(f"{path.name}.1"), path]
    assert all(f.exists() for f in files)
    assert not path.with_name(f"{path.name}.3").exists()
    per_file = 2000 // line_len
    ids: list[str] = []
    for f in files:
        assert f.stat().st_size <= 2000
        lines = f.read_text(encoding="utf-8").splitlines()
        assert all(len(x) + 1 == line_len for x in lines)
        ids += [json.loads(x)["id"] for x in lines]
    # the newest events, contiguous and in order, full files before the current one
    assert ids == [f"ev-{i:04d}" for i in range(n - len(ids), n)]
    assert len(ids) == 2 * per_file + (n - 1) % per_file + 1


# --------------------------------------------------------------------------- webhook


class Endpoint:
    """A real HTTP server in a thread; answers 500 to the next `fail_next` requests."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_next = 0
        self.failures = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    if outer.fail_next > 0:
                        outer.fail_next -= 1
                        outer.failures += 1
                        status = 500
                    else:
                        outer.received.append(json.loads(body))
                        outer.headers.append(dict(self.headers))
                        status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        with self.lock:
            return [r["id"] for r in self.received]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.stop()


def test_webhook_posts_json_with_headers(endpoint: Endpoint) -> None:
    sink = WebhookSink(endpoint.url, headers={"Authorization": "Bearer s3cret"}, timeout_s=2)
    sink.write(record(1))
    assert endpoint.received == [record(1)]
    assert endpoint.headers[0]["Authorization"] == "Bearer s3cret"
    assert endpoint.headers[0]["Content-Type"] == "application/json"

    # credentials in the URL become HTTP Basic auth (urllib alone would take them
    # for part of the host name)
    with_user = endpoint.url.replace("http://", "http://alice:p%40ss@")
    WebhookSink(with_user).write(record(2))
    assert endpoint.ids() == ["ev-0001", "ev-0002"]
    assert endpoint.headers[1]["Authorization"] == "Basic " + base64.b64encode(
        b"alice:p@ss"
    ).decode("ascii")


def test_webhook_failures_raise_sink_error(endpoint: Endpoint) -> None:
    endpoint.fail_next = 1
    with pytest.raises(SinkError, match="HTTP 500"):
        WebhookSink(endpoint.url).write(record(1))
    down = WebhookSink(f"http://127.0.0.1:{free_port()}/hook?token=s3cret", timeout_s=2)
    with pytest.raises(SinkError, match="refused") as err:
        down.write(record(1))
    assert "s3cret" not in str(err.value)  # secrets in the URL are redacted
    assert endpoint.received == []


# faults: Scenario 6: webhook returning 500s
@pytest.mark.faults
def test_webhook_through_outbox_500s_then_200_exactly_once_in_order(
    tmp_path: Path, endpoint: Endpoint
) -> None:
    endpoint.fail_next = 5
    with capture_logs() as logs:
        box = Outbox(tmp_path / "outbox.db", [WebhookSink(endpoint.url, timeout_s=2)], retry=FAST)
        for i in range(10):
            box.put("webhook", record(i))
        wait_until(lambda: len(endpoint.ids()) == 10, what="10 deliveries")
        wait_until(lambda: box.pending("webhook") == 0, what="an empty outbox")
        box.close()
    assert endpoint.failures == 5
    assert endpoint.ids() == [f"ev-{i:04d}" for i in range(10)]  # none lost, none twice
    events = [e["event"] for e in logs]
    assert events.count("sink_unavailable") == 1  # once per change of state, not per try
    assert events.count("sink_recovered") == 1


# faults: Scenario 7 (clean restart; kill -9: test_faults.py)
@pytest.mark.faults
def test_outbox_survives_a_restart(tmp_path: Path, endpoint: Endpoint) -> None:
    path = tmp_path / "outbox.db"
    down = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", timeout_s=2)
    box = Outbox(path, [down], retry=FAST)
    for i in range(6):
        box.put("webhook", record(i))  # acknowledged: committed
    time.sleep(0.3)  # a few failed tries
    assert box.pending("webhook") == 6
    box.close()
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM outbox").fetchone() == (6,)
    raw.close()

    box = Outbox(path, [WebhookSink(endpoint.url, timeout_s=2)], retry=FAST)
    wait_until(lambda: len(endpoint.ids()) == 6, what="pending rows delivered after restart")
    wait_until(lambda: box.pending("webhook") == 0, what="an empty outbox")
    box.close()
    assert endpoint.ids() == [f"ev-{i:04d}" for i in range(6)]


def test_outbox_is_bounded_and_drops_the_oldest(tmp_path: Path, endpoint: Endpoint) -> None:
    path = tmp_path / "outbox.db"
    down = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", timeout_s=2)
    box = Outbox(path, [down], max_rows=3, retry=FAST)
    with capture_logs() as logs:
        for i in range(5):
            box.put("webhook", record(i))
    assert box.pending("webhook") == 3
    box.close()
    drops = [e for e in logs if e["event"] == "outbox_dropped"]
    assert [(e["log_level"], e["sink"], e["count"]) for e in drops] == [
        ("warning", "webhook", 1),
        ("warning", "webhook", 1),
    ]

    box = Outbox(path, [WebhookSink(endpoint.url)], max_rows=3, retry=FAST)
    wait_until(lambda: len(endpoint.ids()) == 3, what="the 3 kept rows")
    box.close()
    assert endpoint.ids() == ["ev-0002", "ev-0003", "ev-0004"]


def test_outbox_rejects_unknown_sink_and_bad_settings(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", [], retry=FAST)
    with pytest.raises(ValueError, match="no sink named 'mqtt'"):
        box.put("mqtt", record(0))
    box.close()
    with pytest.raises(ValueError, match="max_rows"):
        Outbox(tmp_path / "o.db", [], max_rows=0)
    with pytest.raises(ValueError, match="max_s"):
        Retry(initial_s=2, max_s=1)


def test_outbox_removes_a_record_its_sink_cannot_take(tmp_path: Path) -> None:
    down = MqttSink("127.0.0.1", free_port())  # no broker: good records wait
    box = Outbox(tmp_path / "outbox.db", [down], retry=FAST)
    with capture_logs() as logs:
        box.put("mqtt", {"id": "no-camera"})  # MqttSink.write raises KeyError
        box.put("mqtt", record(1))
        wait_until(lambda: box.pending("mqtt") == 1, what="the bad record removed")
        time.sleep(0.2)
    assert box.pending("mqtt") == 1  # the good one still waits for the broker
    box.close()
    rejected = [e for e in logs if e["event"] == "outbox_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["log_level"] == "error"
    assert "KeyError" in rejected[0]["reason"]


# --------------------------------------------------------------------------- mqtt

needs_broker = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto not installed (Debian package 'mosquitto')"
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A real MQTT client collecting (topic, payload, dup) under `topic`."""

    def __init__(self, port: int, topic: str, client_id: str, persistent: bool = False) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError("subscriber did not subscribe")

    def _on_message(self, _: Any, __: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(), msg.dup))

    def on(self, topic: str) -> list[str]:
        """Payloads on `topic`, without the broker's own redeliveries (dup flag: after
        its restart mosquitto resends what this persistent session had already had)."""
        with self.lock:
            return [p for t, p, dup in self.messages if t == topic and not dup]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_write_raises_when_the_broker_is_down() -> None:
    sink = MqttSink("127.0.0.1", free_port(), publish_timeout_s=1)
    t = time.monotonic()
    with pytest.raises(SinkError, match="not connected"):
        sink.write(record(0))
    assert time.monotonic() - t < 1
    sink.close()


# faults: Scenario 6: MQTT broker down for a while
@pytest.mark.faults
@needs_broker
def test_mqtt_broker_down_for_a_while_all_events_arrive_in_order(
    tmp_path: Path, broker: Broker
) -> None:
    prefix = "site1"
    sub = Subscriber(broker.port, f"{prefix}/#", "test-sub", persistent=True)
    sink = MqttSink(
        "127.0.0.1", broker.port, client_id="alprd-test", topic_prefix=prefix, publish_timeout_s=2
    )
    box = Outbox(tmp_path / "outbox.db", [sink], retry=FAST)
    plates = f"{prefix}/gate/plate"
    try:
        for i in range(3):
            box.put("mqtt", record(i))
        wait_until(lambda: len(sub.on(plates)) == 3, what="3 events before the outage")

        broker.stop()
        with capture_logs() as logs:
            for i in range(3, 8):
                box.put("mqtt", record(i))
            wait_until(  # the broker really is down for the outbox: it said so
                lambda: any(e["event"] == "sink_unavailable" for e in logs), what="unavailable"
            )
            time.sleep(0.5)  # several more failed tries: still said once
            assert box.pending("mqtt") == 5
            broker.start()
            wait_until(lambda: len(sub.on(plates)) == 8, timeout=15, what="8 events")
            wait_until(lambda: box.pending("mqtt") == 0, what="an empty outbox")
        events = [e["event"] for e in logs]
        assert events.count("sink_unavailable") == 1 and events.count("sink_recovered") == 1

        ids = [json.loads(p)["id"] for p in sub.on(plates)]
        assert ids == [f"ev-{i:04d}" for i in range(8)]  # none lost, in order

        # A new subscriber gets the retained last event and availability.
        late = Subscriber(broker.port, f"{prefix}/#", "test-late")
        wait_until(lambda: bool(late.on(f"{prefix}/status")), what="retained status")
        wait_until(lambda: bool(late.on(f"{prefix}/gate/last")), what="retained last")
        assert late.on(f"{prefix}/status") == ["online"]
        assert [json.loads(p) for p in late.on(f"{prefix}/gate/last")] == [record(7)]
        assert late.on(plates) == []  # the event topic itself is not retained

        box.close()  # clean stop: "offline", retained
        wait_until(lambda: late.on(f"{prefix}/status")[-1:] == ["offline"], what="offline")
        late.close()
    finally:
        box.close()
        sub.close()


CHILD = """
import sys, time
from alprd.log import configure
from alprd.sinks.mqtt import MqttSink
configure("console", "warning")  # logs to stderr: stdout is for the parent
sink = MqttSink("127.0.0.1", int(sys.argv[1]), client_id="child", topic_prefix="lwt")
deadline = time.monotonic() + 10
while True:
    try:
        sink.write({"id": "x", "camera": "gate"})
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
print("published", flush=True)
time.sleep(60)
"""


@needs_broker
def test_mqtt_last_will_says_offline_when_alprd_dies(broker: Broker) -> None:
    sub = Subscriber(broker.port, "lwt/status", "test-lwt")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(broker.port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "published"
        wait_until(lambda: sub.on("lwt/status") == ["online"], what="online")
        child.kill()  # no clean disconnect: the broker publishes the will
        child.wait(10)
        wait_until(lambda: sub.on("lwt/status") == ["online", "offline"], what="the last will")
    finally:
        if child.poll() is None:
            child.kill()
        sub.close()


def test_outputs_that_cannot_open_are_left_out_and_the_others_run(tmp_path):
    """A state directory that cannot hold files (here: it is a file) gives a clear
    error per output; the ones that can still work and emit() never raises."""
    from structlog.testing import capture_logs

    from alprd import config as cfgmod
    from alprd.pipeline.types import PlateEvent
    from alprd.sinks.outputs import Outputs

    blocked = tmp_path / "state-is-a-file"
    blocked.write_text("x")
    (tmp_path / "alprd.toml").write_text(
        f'[paths]\nroot = "."\nstate_dir = "{blocked}"\n'
        f'[outputs.jsonl]\nenabled = true\npath = "{tmp_path / "ok" / "reads.jsonl"}"\n'
    )
    with capture_logs() as logs:
        outputs = Outputs.open(cfgmod.load(tmp_path / "alprd.toml"))
        record = outputs.emit(
            PlateEvent(
                camera="gate",
                plate="AB123",
                confidence=0.9,
                char_confidences=(0.9,) * 5,
                first_seen=1.0,
                last_seen=2.0,
                first_frame=0,
                last_frame=1,
                plate_box=(1, 2, 3, 4),
                vehicle_box=None,
                vehicle_class=None,
                reads=3,
                track_id=1,
            )
        )
        outputs.close()
    failed = {e["output"] for e in logs if e["event"] == "output_failed"}
    assert failed == {"sqlite", "snapshots"}
    assert all("state-is-a-file" in e["reason"] for e in logs if e["event"] == "output_failed")
    line = (tmp_path / "ok" / "reads.jsonl").read_text()
    assert json.loads(line)["id"] == record["id"]


# --------------------------------------------------------------------------- home assistant


def test_home_assistant_discovery_configs_point_at_the_alprd_topics() -> None:
    from alprd.sinks.homeassistant import discovery

    msgs = dict(
        discovery(
            discovery_prefix="ha",
            topic_prefix="alprd/site1",
            node="box1",
            cameras=["gate", "exit"],
            removed=["old"],
        )
    )
    sensor = json.loads(msgs["ha/sensor/box1/gate_plate/config"])
    assert sensor["state_topic"] == "alprd/site1/gate/last"
    assert sensor["json_attributes_topic"] == "alprd/site1/gate/last"
    assert sensor["availability_topic"] == "alprd/site1/status"
    event = json.loads(msgs["ha/event/box1/exit_read/config"])
    assert event["state_topic"] == "alprd/site1/exit/plate"
    assert event["event_types"] == ["plate"]
    ids = [json.loads(p)["unique_id"] for p in msgs.values() if p]
    assert len(ids) == len(set(ids)) == 4  # unique per camera and entity
    assert {json.loads(p)["device"]["identifiers"][0] for p in msgs.values() if p} == {"alprd_box1"}
    # a removed camera: empty retained configs delete its entities
    assert msgs["ha/sensor/box1/old_plate/config"] == ""
    assert msgs["ha/event/box1/old_read/config"] == ""


def test_home_assistant_templates_render_an_event_record() -> None:
    """The templates Home Assistant will render (Jinja, as HA does) on a real record:
    the sensor state is the plate, the event payload is JSON with event_type."""
    jinja2 = pytest.importorskip("jinja2")
    from alprd.sinks.homeassistant import discovery

    msgs = dict(discovery(discovery_prefix="homeassistant", topic_prefix="alprd",
                          node="n", cameras=["gate"]))  # fmt: skip
    env = jinja2.Environment()
    rec = record(1, plate='AB"12')
    value_json = json.loads(json.dumps(rec))
    sensor = json.loads(msgs["homeassistant/sensor/n/gate_plate/config"])
    event = json.loads(msgs["homeassistant/event/n/gate_read/config"])
    assert env.from_string(sensor["value_template"]).render(value_json=value_json) == 'AB"12'
    fired = json.loads(env.from_string(event["value_template"]).render(value_json=value_json))
    assert fired["event_type"] == "plate"
    assert fired["plate"] == 'AB"12'
    assert fired["camera"] == rec["camera"]


@needs_broker
def test_mqtt_publishes_home_assistant_discovery_and_follows_camera_changes(
    broker: Broker,
) -> None:
    sub = Subscriber(broker.port, "homeassistant/#", "test-ha")
    sink = MqttSink("127.0.0.1", broker.port, discovery_prefix="homeassistant",
                    node_id="site-1", cameras=["gate", "exit"])  # fmt: skip
    try:
        gate = "homeassistant/sensor/site-1/gate_plate/config"
        exit_ = "homeassistant/event/site-1/exit_read/config"
        wait_until(lambda: bool(sub.on(gate)) and bool(sub.on(exit_)), what="discovery")
        assert json.loads(sub.on(gate)[-1])["state_topic"] == "alprd/gate/last"
        sink.announce(["gate", "yard"])  # a reload: exit removed, yard added
        wait_until(lambda: sub.on(exit_)[-1:] == [""], what="exit's entities removed")
        wait_until(
            lambda: bool(sub.on("homeassistant/sensor/site-1/yard_plate/config")),
            what="yard announced",
        )
    finally:
        sink.close()
        sub.close()
    # retained: a Home Assistant that connects later still finds the configs
    late = Subscriber(broker.port, "homeassistant/#", "test-ha-late")
    try:
        wait_until(lambda: bool(late.on(gate)), what="retained discovery")
        assert not late.on(exit_)  # deleted, not retained
    finally:
        late.close()


# --------------------------------------------------------------------------- retention


def test_sqlite_prunes_by_age_and_count_a_batch_at_a_time_and_shrinks(tmp_path: Path) -> None:
    db = tmp_path / "reads.db"
    sink = SqliteSink(db)
    for i in range(3000):
        rec = record(i, t=T0 + 99 * i)  # first seen at T0 + 100 i
        rec["snapshots"] = [f"/snap/ev-{i:04d}-plate.jpg"]
        sink.write(rec)
    size = db.stat().st_size + (tmp_path / "reads.db-wal").stat().st_size
    # by age: the 1000 events first seen before T0 + 100000 s, 400 at a time
    before = T0 + 100_000
    assert sink.prune(before, keep=0, batch=400).events == 400
    pruned = sink.prune(before, keep=0, batch=1000)
    assert pruned.events == 600 and pruned.snapshots[0] == "/snap/ev-0400-plate.jpg"
    assert sink.prune(before, keep=0).events == 0
    # by count: the newest 500 stay
    assert sink.prune(None, keep=500, batch=10_000).events == 1500
    left = sink.query(limit=10_000)
    assert len(left) == 500 and left[-1]["id"] == "ev-2500" and left[0]["id"] == "ev-2999"
    sink._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert sqlite3.connect(db).execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert db.stat().st_size < size / 2  # the freed pages went back (1/6 of the rows left)
    sink.close()


def test_outputs_prune_events_their_snapshots_and_undelivered_copies(
    tmp_path: Path, endpoint: Endpoint
) -> None:
    import numpy as np

    from alprd import config as cfgmod
    from alprd.pipeline.stream import Snapshot
    from alprd.sinks.outputs import Outputs

    endpoint.fail_next = 10_000  # the webhook is down: every event waits in the outbox
    cfg = tmp_path / "alprd.toml"
    cfg.write_text(
        '[paths]\nroot = "."\n[storage]\nretention_days = 1\nmax_events = 0\n'
        f'[outputs.webhook]\nenabled = true\nurl = "{endpoint.url}"\n'
        "[outputs.outbox]\nretry_initial_s = 30\nretry_max_s = 60\n"
    )
    config = cfgmod.load(cfg)
    outputs = Outputs.open(config)
    image = np.full((240, 320, 3), 100, np.uint8)
    now = time.time()
    for i in range(6):  # three events two days old, three from the last hour
        t = now - (2 * 86400 if i < 3 else 3600) + i
        outputs.emit(event(i, t=t - i), Snapshot(image, READ))
    snaps = sorted((tmp_path / "state" / "snapshots").rglob("*.jpg"))
    assert len(snaps) == 12 and outputs.pending() == {"webhook": 6}
    with capture_logs() as logs:
        assert outputs.prune(now=1.0, wall=now) == 3
        assert outputs.prune(now=2.0, wall=now) == 0  # not before prune_interval_s
    said = next(e for e in logs if e["event"] == "store_pruned")
    assert (said["events"], said["snapshots"], said["outbox"]) == (3, 6, 3)
    assert len(sorted((tmp_path / "state" / "snapshots").rglob("*.jpg"))) == 6
    assert outputs.pending() == {"webhook": 3}
    store = SqliteSink(config.outputs.sqlite.path)
    assert sorted(r["plate"] for r in store.query()) == ["ABC0003", "ABC0004", "ABC0005"]
    store.close()
    outputs.close(timeout=1.0)
