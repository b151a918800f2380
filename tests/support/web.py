"""`alprd web` in tests: a store written by the daemon's own sinks, the real
command serving it, and requests to it."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alprd import config as cfgmod
from alprd.sinks.base import iso_utc, new_event_id
from alprd.sinks.snapshots import SnapshotStore
from alprd.sinks.sqlite import SqliteSink
from support.servers import wait_until

T0 = 1_796_000_000.0  # 2026-11-30, UTC
PLATES = ("L417VS", "L417V5", "KA22P3368", "ABC1234", "L41XYZ")


@dataclass
class Site:
    root: Path
    config: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def record(plate: str, camera: str, t: float, snapshots: list[str] | None = None) -> dict:
    return {
        "id": new_event_id(), "camera": camera, "plate": plate, "confidence": 0.93,
        "char_confidences": [0.9] * len(plate), "plate_box": [10.0, 10.0, 100.0, 40.0],
        "vehicle_box": [0.0, 0.0, 300.0, 300.0], "vehicle_class": "car", "reads": 7,
        "known_label": "staff" if plate == "ABC1234" else None, "known_plate": None,
        "format": "nl", "first_seen": iso_utc(t), "last_seen": iso_utc(t + 2.0),
        "texts": [{"text": plate, "reads": 6, "confidence": 0.95},
                  {"text": plate[:-1] + "?", "reads": 1, "confidence": 0.61}],
        "snapshots": snapshots or [],
    }  # fmt: skip


def write_events(config: cfgmod.Config, n: int, start: float = T0) -> list[dict]:
    """`n` events a minute apart, as the daemon's outputs store them."""
    sink = SqliteSink(config.outputs.sqlite.path)
    snaps = SnapshotStore(config.outputs.snapshots.path, 50)
    image = np.full((480, 640, 3), 120, np.uint8)
    out = []
    for i in range(n):
        camera = ("gate", "yard")[i % 2]
        rec = record(PLATES[i % len(PLATES)], camera, start + 60.0 * i)
        rec["snapshots"] = snaps.save(rec["id"], camera, image, (10, 10, 100, 40), (0, 0, 300, 300))
        sink.write(rec)
        out.append(rec)
    sink.close()
    return out


def serve(site: Site, read_only: Path | None = None) -> subprocess.Popen[bytes]:
    """`alprd web` for `site`; with `read_only`, that folder is read-only for it
    alone (its own mount namespace, as systemd's ReadOnlyPaths= makes it)."""
    command = [sys.executable, "-m", "alprd", "--config", str(site.config), "web"]
    if read_only is not None:
        ro = f"mount --bind {read_only} {read_only} && mount -o remount,bind,ro {read_only}"
        command = ["unshare", "--mount", "sh", "-c", ro + ' && exec "$@"', "sh", *command]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def up() -> bool:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            urllib.request.urlopen(site.url + "/api/v1/cameras", timeout=2)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    wait_until(up, timeout=30, what="alprd web to answer")
    return proc


def get(site: Site, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(site.url + path, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def api(site: Site, path: str):
    status, _, body = get(site, path)
    assert status == 200, body
    return json.loads(body)


def request(
    site: Site, method: str, path: str, body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One request, redirects not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def up(site: Site) -> bool:
    try:
        request(site, "GET", "/login")
    except OSError:
        return False
    return True
