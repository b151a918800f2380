"""`make bench-outputs`: events per second into SQLite + JSONL + MQTT (through the
durable outbox) on a local mosquitto, and how long the broker takes to have them
all. Skipped without the mosquitto binary."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho

from alprd import config as cfgmod
from alprd import log as logmod
from alprd.pipeline.types import PlateEvent
from alprd.sinks.outputs import Outputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    broker = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(broker).exists():
        print("no mosquitto: apt-get install mosquitto")
        return 0
    logmod.configure("console", "warning")
    with tempfile.TemporaryDirectory(prefix="alprd-outputs-") as tmp:
        root = Path(tmp)
        port = free_port()
        (root / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        proc = subprocess.Popen(
            [broker, "-c", str(root / "mosquitto.conf")], stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)
        got: list[float] = []
        sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
        sub.on_message = lambda c, u, m: got.append(time.monotonic())
        sub.connect("127.0.0.1", port)
        sub.subscribe("alprd/+/plate", qos=1)
        sub.loop_start()
        (root / "alprd.toml").write_text(
            f'[paths]\nroot = "."\n[outputs.jsonl]\nenabled = true\n'
            f"[outputs.mqtt]\nenabled = true\nport = {port}\n"
            "[outputs.snapshots]\nenabled = false\n"
        )
        outputs = Outputs.open(cfgmod.load(root / "alprd.toml"))
        time.sleep(0.5)
        started = time.monotonic()
        for i in range(args.events):
            now = time.time()
            outputs.emit(
                PlateEvent(
                    camera="gate",
                    plate=f"AB{i:05d}",
                    confidence=0.95,
                    char_confidences=(0.95,) * 7,
                    first_seen=now,
                    last_seen=now,
                    first_frame=i,
                    last_frame=i,
                    plate_box=(1, 2, 3, 4),
                    vehicle_box=None,
                    vehicle_class="car",
                    reads=5,
                    track_id=i,
                )
            )
        acked = time.monotonic() - started
        while len(got) < args.events and time.monotonic() - started < 120:
            time.sleep(0.05)
        delivered = time.monotonic() - started
        outputs.close()
        sub.loop_stop()
        proc.terminate()
        proc.wait()
    print(
        f"{args.events} events: acknowledged (SQLite + JSONL + outbox) at "
        f"{args.events / acked:.0f} events/s; all {len(got)} on the broker after "
        f"{delivered:.1f} s ({len(got) / delivered:.0f} events/s end to end)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
