"""`alprd lists` on real files, and the real daemon taking a list change up
while it reads the rear-view video in a loop (a pass every few seconds)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import needs_data
from support.daemon import DaemonProcess
from test_service import NL_VIDEO, site, sock, write_config  # noqa: F401


def lists(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alprd", "lists", *args, "--config", str(config)],
        capture_output=True, text=True, input=stdin,
    )  # fmt: skip


def test_lists_are_added_imported_shown_exported_and_removed(tmp_path: Path) -> None:
    config = tmp_path / "alprd.toml"
    config.write_text('[paths]\nroot = "."\n[lists]\ntime_zone = "Europe/Amsterdam"\n')
    assert "no plate lists yet" in lists(config, "show").stderr
    done = lists(config, "add", "residents", "l-417-vs", "--label", "Ann", "--hours",
                 "07:00-19:00", "--distance", "1")  # fmt: skip
    assert done.returncode == 0 and "L417VS added to residents" in done.stdout
    assert lists(config, "add", "blocked", "AB123CD", "--kind", "deny").returncode == 0
    wrong = lists(config, "add", "blocked", "XX1", "--kind", "allow")
    assert wrong.returncode == 2 and "'blocked' is a deny list, not allow" in wrong.stderr
    csv = "plate,label,from,until,days\nXY99ZZ,Bob,2026-01-01,2027-01-01,mon-fri\n"
    assert "1 entries imported" in lists(config, "import", "residents", "-", stdin=csv).stdout
    shown = lists(config, "show").stdout
    assert "# blocked (deny, 1 plates)" in shown and "# residents (allow, 2 plates)" in shown
    exported = lists(config, "export", "residents").stdout.splitlines()
    assert exported == [
        "plate,label,from,until,days,hours,distance",
        "L417VS,Ann,,,,07:00-19:00,1",
        "XY99ZZ,Bob,2026-01-01T00:00+01:00,2027-01-01T00:00+01:00,mon-fri,,0",
    ]
    # what export writes, import reads back the same
    (tmp_path / "r.csv").write_text("\n".join(exported) + "\n")
    assert lists(config, "import", "copy", str(tmp_path / "r.csv")).returncode == 0
    assert lists(config, "export", "copy").stdout.splitlines() == exported
    bad = lists(config, "import", "residents", "-", stdin="plate,days\nAB1,funday\n")
    assert bad.returncode == 2 and "line 2: days: 'funday'" in bad.stderr
    assert "XY99ZZ" in lists(config, "export", "residents").stdout  # nothing lost by it
    assert "1 entries removed" in lists(config, "remove", "residents", "XY99ZZ").stdout
    assert lists(config, "remove", "residents", "XY99ZZ").returncode == 1
    assert "list deleted" in lists(config, "remove", "copy").stdout
    assert "copy" not in lists(config, "show").stdout


@needs_data(NL_VIDEO, "video")
def test_the_daemon_decides_each_pass_by_the_lists_as_they_are_now(
    site: Path,  # noqa: F811
    sock,  # noqa: F811
) -> None:
    camera = (f'[[cameras]]\nname = "rear"\nurl = "{NL_VIDEO}"\nfps = 5\nloop = true\n'
              'arriving = "towards"\n')  # fmt: skip
    config = write_config(site, camera, "[voting]\ndedupe_window_s = 0\n")
    d = DaemonProcess(config, sock)

    def next_pass(**match: object) -> dict:
        return d.wait_event("plate_event", timeout=120, **match)

    try:
        sock.wait_for(lambda m: m.startswith("READY=1"), timeout=120)
        first = next_pass()
        assert (first["plate"], first["decision"], first["list"]) == ("L417VS", "", None)
        assert lists(config, "add", "residents", "L417V5", "--label", "Ann",
                     "--distance", "1").returncode == 0  # fmt: skip
        allowed = next_pass(decision="allow")
        assert allowed["list"] == "residents" and allowed["plate"] == "L417VS"
        assert lists(config, "add", "blocked", "L417VS", "--kind", "deny").returncode == 0
        denied = next_pass(decision="deny")  # a deny entry wins over an allow entry
        assert denied["list"] == "blocked"
    finally:
        code, logs = d.stop()
    assert code == 0
    loaded = [e["lists"] for e in logs if e["event"] == "lists_loaded"]
    assert loaded[:2] == ["residents", "blocked,residents"]
    with sqlite3.connect(site / "state" / "reads.db") as db:
        stored = [json.loads(p) for (p,) in db.execute("SELECT payload FROM reads")]
    allow = next(r for r in stored if r["decision"] == "allow")
    assert (allow["list"], allow["list_plate"], allow["list_label"]) == (
        "residents", "L417V5", "Ann",
    )  # fmt: skip
    assert allow["list_distance"] == 0.5  # S read for 5: a confusable pair
    # the car drives away from the camera behind it: leaving wherever its box shrank
    # enough before the event went out. (At the video's loop one track may join the
    # car far ahead and the car close by again: that pass grew, "arriving".)
    ways = [r["direction"] for r in stored]
    assert "leaving" in ways and ways.count("arriving") <= len(ways) // 2, ways
