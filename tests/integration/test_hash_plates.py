"""`privacy.hash_plates` with the real daemon over the rear-view video: the plate
leaves the daemon only as its keyed hash (store, JSONL, journal), an exact search
finds it by its text (`alprd reads`, `alprd web`), a pattern does not."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from conftest import needs_data
from support.daemon import DaemonProcess
from support.servers import free_port
from support.web import Site, api, serve
from test_service import NL_VIDEO, camera, site, sock, write_config  # noqa: F401

from alprd.hashing import plate_hash, read_key


def reads(config: Path, *args: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "alprd", "reads", "--json", "--config", str(config), *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines()]


@needs_data(NL_VIDEO, "video")
def test_an_unknown_plate_is_stored_and_logged_as_its_hash_and_found_by_its_text(
    site: Path,  # noqa: F811
    sock,  # noqa: F811
) -> None:
    port = free_port()
    video = site / "rear.mp4"  # the clip's own name holds the plate
    video.symlink_to(NL_VIDEO)
    config = write_config(
        site, camera("rear", video, fps=5),
        f"[privacy]\nhash_plates = true\n[outputs.jsonl]\nenabled = true\n[web]\nport = {port}\n",
    )  # fmt: skip
    d = DaemonProcess(config, sock)
    try:
        sock.wait_for(lambda m: m.startswith("READY=1"), timeout=120)
        event = d.wait_event("plate_event", timeout=180)
    finally:
        code, logs = d.stop()
    assert code == 0
    assert [e["event"] for e in logs].count("plates_in_snapshots") == 1  # said at start
    key_file = site / "state" / "plate-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = read_key(key_file)
    assert key is not None
    hashed = plate_hash(key, "L417VS")
    assert event["plate"] == hashed and hashed.startswith("#")
    # the text is nowhere: not in the journal, the store or the JSONL file
    assert not [line for line in logs if "L417VS" in json.dumps(line)]
    for path in (site / "state").iterdir():
        if path.is_file():
            assert b"L417VS" not in path.read_bytes(), path
    with sqlite3.connect(site / "state" / "reads.db") as db:
        assert db.execute("SELECT plate FROM reads").fetchall() == [(hashed,)]
    [row] = reads(config, "--plate", "L417VS")
    assert row["plate"] == hashed and all(t["text"].startswith("#") for t in row["texts"])
    assert reads(config, "--plate", "L41*") == []  # a pattern cannot see through a hash
    web = serve(Site(site, config, port))
    try:
        found = api(Site(site, config, port), "/api/v1/events?plate=l417-vs")
        assert [e["plate"] for e in found["events"]] == [hashed]
        assert api(Site(site, config, port), "/api/v1/events?plate=L41*")["events"] == []
    finally:
        web.terminate()
        web.wait(10)
