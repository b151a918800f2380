"""`make soak`: the daemon from this checkout, for a given time, against live local
cameras, with faults along the way; how its memory, fds and threads move.

Cameras: `--cameras` HTTP MJPEG servers (default 4), each looping one of the
videos in `$ALPRD_TEST_DATA/videos` endlessly at `--fps`, as an IP camera does
(no RTSP server: none small enough ships with Debian or PyPI). Outputs: the
SQLite store and MQTT to a real mosquitto. The daemon: `python -m alprd run`
with the default models and settings otherwise (OpenVINO where installed).

Faults, at fractions of the run: camera 1 unplugged for 30 s (20%); the broker
stopped for 60 s (35%); a reload (SIGHUP, 50%); the state directory full for 60 s
(65%: a tmpfs filled up, where tmpfs can be mounted, i.e. as root); shorter in
a run under 10 minutes (5% and 10% of it); and every
`--swap-every` minutes a retrained plate model dropped as `best.onnx` (same
network, new bytes: routed, built, validated and swapped in the background).

Every `--sample-every` seconds: RSS, USS and PSS (`/proc/PID/smaps_rollup`), open
fds, threads, Python GC collections, and from the daemon's metrics its outbox and
backlog. At the end: the series as CSV and PNG (`--out`), start / end / slope of
each over the second half, RSS by sixths of the run (a swap's or a fault's
step shows there, where a slope smears it), resident memory by what holds it
after warm-up and at the end (mapped files, heaps, large blocks: `/proc/PID/smaps`),
and events produced (log) = stored (SQLite) = delivered (MQTT) -- which must be
equal.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from benchmarks import DATA, REPO, default_models, plate_onnx, resident_by_kind, smaps_rollup
from tests.support.servers import MOSQUITTO, Broker, MjpegCamera, free_port

FIELDS = ("t_s", "rss_mb", "uss_mb", "pss_mb", "fds", "threads", "gc", "outbox", "backlog",
          "passes", "reads_held", "frames", "events")  # fmt: skip


def jpegs(video: Path, limit: int = 300) -> list[bytes]:
    """The first `limit` frames of `video` as JPEG bytes (decoded once)."""
    cap = cv2.VideoCapture(str(video))
    out = []
    while len(out) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    cap.release()
    return out


class Delivered:
    """A persistent MQTT subscriber counting the plate events delivered (by id)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.ids: set[str] = set()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="alprd-soak", clean_session=False
        )
        self.client.on_connect = lambda c, *a: c.subscribe("alprd/+/plate", qos=1)
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with contextlib.suppress(ValueError, KeyError):
            self.ids.add(json.loads(msg.payload)["id"])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def proc_sample(pid: int) -> dict[str, float]:
    """RSS, USS (private pages), PSS in MB, open fds and threads of `pid`."""
    out: dict[str, float] = {}
    kb = smaps_rollup(pid)
    out["rss_mb"] = kb["Rss"] / 1024
    out["pss_mb"] = kb["Pss"] / 1024
    out["uss_mb"] = (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            out["threads"] = int(line.split()[1])
    return out


def daemon_pid(parent: int, timeout_s: float = 30.0) -> int:
    """The daemon's own process under a tool that runs it as a child (heaptrack):
    the descendant of `parent` whose command line runs alprd."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        todo = [parent]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if argv[1:4] == [b"-m", b"alprd", b"run"]:  # python itself, not the tool
                    return pid
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
        time.sleep(0.2)
    return parent


def metrics_sample(port: int) -> dict[str, float]:
    """GC collections, outbox, backlog, open passes and the reads they hold, frames
    and events from the daemon's metrics."""
    out = dict.fromkeys(("gc", "outbox", "backlog", "passes", "reads_held", "frames", "events"),
                        0.0)  # fmt: skip
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return out
    names = {"python_gc_collections_total": "gc", "alprd_outbox_pending": "outbox",
             "alprd_output_backlog": "backlog", "alprd_frames_total": "frames",
             "alprd_events_total": "events", "alprd_passes_open": "passes",
             "alprd_pass_reads_held": "reads_held"}  # fmt: skip
    for line in text.decode().splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            out[names[name]] += float(line.rsplit(" ", 1)[1])
    return out


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over ts (seconds), per hour."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if not var:
        return 0.0
    return 3600 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


@dataclass
class Site:
    root: Path
    config: Path
    state: Path
    tmpfs: bool
    plate_onnx: Path
    log: Path
    marks: list[tuple[float, str]] = field(default_factory=list)


def make_site(
    root: Path, cameras: list[MjpegCamera], broker: Broker, metrics_port: int, service: list[str]
) -> Site:
    default_models(root, engines=True)  # the daemon starts without a build
    state = root / "state"
    state.mkdir()
    tmpfs = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(state)], capture_output=True
        ).returncode
        == 0
    )
    (root / "etc").mkdir()
    config = root / "etc" / "alprd.toml"
    config.write_text(
        '[paths]\nroot = ".."\nstate_dir = "state"\n'
        f"[metrics]\nport = {metrics_port}\n"
        "[sources]\nreconnect_max_s = 4\n"
        f'[outputs.mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n'
        + "".join(f'[[cameras]]\nname = "cam{i}"\nurl = "{c.url}"\n' for i, c in enumerate(cameras))
        + "[service]\n"
        + "".join(f"{setting}\n" for setting in service)
    )
    return Site(root, config, state, tmpfs, root / "export.onnx", root / "daemon.log")


def export_plate(site: Site) -> None:
    """The plate model as ONNX, so that a retrained variant is quick to write."""
    shutil.copyfile(plate_onnx(site.root), site.plate_onnx)


def drop_model(site: Site, revision: int) -> None:
    import onnx

    model = onnx.load(site.plate_onnx)
    model.metadata_props.add(key="revision", value=str(revision))
    tmp = site.root / "models" / ".best.tmp"
    onnx.save(model, tmp)
    os.rename(tmp, site.root / "models" / "best.onnx")


def fill_disk(site: Site) -> Path:
    filler = site.state / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * (1 << 20))
    return filler


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--swap-every", type=float, default=10.0, help="minutes between model drops")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds")
    p.add_argument("--videos", type=Path, default=DATA / "videos")
    p.add_argument("--out", type=Path, default=Path("soak"))
    p.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [service] setting for the daemon (TOML), e.g. heap_mmap_threshold_kb=0",
    )
    p.add_argument("--under", default="",
                   help="a command the daemon runs under, e.g. 'heaptrack -o soak/alprd' "
                        "(where its memory goes, by call stack: heaptrack_print)")  # fmt: skip
    args = p.parse_args()
    from alprd import log as logmod

    logmod.configure("console", "warning")  # the harness's own model export: quiet
    videos = sorted(args.videos.glob("*.mp4"))
    if not videos:
        print(f"no videos in {args.videos}: nothing to measure")
        return 0
    if MOSQUITTO is None:
        print("mosquitto is not installed (Debian package 'mosquitto'): nothing to measure")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    clips = [jpegs(v) for v in videos]
    cameras = [MjpegCamera(clips[i % len(clips)], args.fps) for i in range(args.cameras)]
    for c in cameras:
        c.start()
    with tempfile.TemporaryDirectory(prefix="alprd-soak-") as tmp:
        broker = Broker(Path(tmp) / "broker")
        broker.start()
        metrics_port = free_port()
        site = make_site(Path(tmp) / "site", cameras, broker, metrics_port, args.service)
        try:
            return soak(args, site, cameras, broker, metrics_port)
        finally:
            broker.stop()
            for c in cameras:
                c.stop()
            if site.tmpfs:
                subprocess.run(["umount", "-l", str(site.state)], check=False)


def soak(args: argparse.Namespace, site: Site, cameras: list[MjpegCamera], broker: Broker,
         metrics_port: int) -> int:  # fmt: skip
    export_plate(site)
    delivered = Delivered(broker.port)
    env = {**os.environ, "ALPRD_LOG_FORMAT": "json"}
    with site.log.open("w") as log_file:
        daemon = subprocess.Popen(
            [*shlex.split(args.under), sys.executable, "-m", "alprd", "run",
             "--config", str(site.config)],
            stderr=log_file, stdout=subprocess.DEVNULL, env=env, cwd=REPO,
        )  # fmt: skip
    pid = daemon_pid(daemon.pid) if args.under else daemon.pid
    duration = args.minutes * 60
    start = time.monotonic()

    def at(fraction: float, what: str, action: Callable[[], None]) -> tuple[float, str, Any]:
        return (start + fraction * duration, what, action)

    filler: list[Path] = []
    short, long = min(30.0, 0.05 * duration) / duration, min(60.0, 0.1 * duration) / duration
    faults = [
        at(0.20, "camera cam1 unplugged", cameras[1 % len(cameras)].stop),
        at(0.20 + short, "camera cam1 back", cameras[1 % len(cameras)].start),
        at(0.35, "broker stopped", broker.stop),
        at(0.35 + long, "broker started", broker.start),
        at(0.50, "reload (SIGHUP)", lambda: os.kill(pid, signal.SIGHUP)),
    ]
    if site.tmpfs:
        faults += [
            at(0.65, "state disk full", lambda: filler.append(fill_disk(site))),
            at(0.65 + long, "state disk freed", lambda: filler.pop().unlink()),
        ]
    swap_s = args.swap_every * 60
    faults += [
        (start + k * swap_s, f"model dropped ({k})", lambda k=k: drop_model(site, k))
        for k in range(1, int(duration // swap_s) + 1)
        if k * swap_s < duration - 30
    ]
    faults.sort(key=lambda f: f[0])
    rows: list[dict[str, float]] = []
    held: list[dict[str, float]] = []  # resident memory by kind, after warm-up and at the end
    next_sample = start
    try:
        while time.monotonic() - start < duration and daemon.poll() is None:
            now = time.monotonic()
            while faults and faults[0][0] <= now:
                _, what, action = faults.pop(0)
                action()
                site.marks.append((now - start, what))
                print(f"{now - start:7.0f} s  {what}", flush=True)
            if now >= next_sample:
                row = {"t_s": round(now - start, 1), **proc_sample(pid),
                       **metrics_sample(metrics_port)}  # fmt: skip
                rows.append(row)
                next_sample += args.sample_every
                if not held and now - start >= 60:
                    held.append(resident_by_kind(pid))  # after warm-up
            time.sleep(0.2)
        with contextlib.suppress(OSError):
            held.append(resident_by_kind(pid))  # at the end
    finally:
        with contextlib.suppress(ProcessLookupError):  # the daemon itself, not a tool's shell
            os.kill(pid, signal.SIGTERM)
        code = daemon.wait(60)
    time.sleep(3)  # the last MQTT deliveries
    delivered.close()
    return report(args, site, rows, code, delivered.ids, held)


def report(args: argparse.Namespace, site: Site, rows: list[dict[str, float]], code: int,
           delivered: set[str], held: list[dict[str, float]]) -> int:  # fmt: skip
    shutil.copyfile(site.log, args.out / "daemon.log")  # the journal of the run, kept
    lines = site.log.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    produced = [e for e in events if e.get("event") == "plate_event"]
    errors = [e for e in events if e.get("level") in ("error", "critical")]
    db = site.state / "reads.db"
    stored = 0
    if db.is_file():
        stored = sqlite3.connect(db).execute("SELECT COUNT(*) FROM reads").fetchone()[0]
    with (args.out / "soak.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    plot(args.out / "soak.png", rows, site.marks)
    warm = [r for r in rows if r["t_s"] >= 60] or rows
    half = [r for r in rows if r["t_s"] >= rows[-1]["t_s"] / 2] if rows else []
    print(f"\nalprd soak: {args.cameras} cameras at {args.fps:g} fps, {args.minutes:g} min, "
          f"{os.cpu_count()} CPUs; exit code {code}")  # fmt: skip
    print(f"{'':<10} {'start':>9} {'end':>9} {'max':>9} {'slope, 2nd half':>16}")
    for key, unit in (("rss_mb", "MB"), ("uss_mb", "MB"), ("pss_mb", "MB"), ("fds", ""),
                      ("threads", ""), ("outbox", ""), ("backlog", ""), ("passes", ""),
                      ("reads_held", "")):  # fmt: skip
        if not warm:
            break
        ys = [r[key] for r in half]
        slope = slope_per_hour([r["t_s"] for r in half], ys)
        print(f"{key:<10} {warm[0][key]:>9.1f} {rows[-1][key]:>9.1f} "
              f"{max(r[key] for r in warm):>9.1f} {slope:>+12.1f}/h {unit}")  # fmt: skip
    print(windows(rows, args.minutes * 60 / 6))
    if len(held) == 2:
        first, last = held
        print("resident MB by what holds it, after 60 s -> at the end: " + ", ".join(
            f"{k} {first.get(k, 0):.0f} -> {last.get(k, 0):.0f}"
            for k in sorted(set(first) | set(last), key=lambda k: -last.get(k, 0))
            if max(first.get(k, 0), last.get(k, 0)) >= 0.5))  # fmt: skip
    print(f"events: produced {len(produced)}, stored {stored}, delivered (MQTT) {len(delivered)}"
          f"{'' if len(produced) == stored == len(delivered) else '  <- NOT EQUAL'}")  # fmt: skip
    print(f"error lines: {len(errors)} ({', '.join(sorted({e['event'] for e in errors}))})")
    print(
        f"series: {args.out / 'soak.csv'}, {args.out / 'soak.png'}, "
        f"log: {args.out / 'daemon.log'}; start = after 60 s"
    )
    return 0 if len(produced) == stored == len(delivered) else 1


def windows(rows: list[dict[str, float]], width_s: float) -> str:
    """RSS mean / max per window of `width_s` seconds, in order (steps at swaps
    and faults show here, where a slope would smear them)."""
    groups: dict[int, list[float]] = {}
    for r in rows:
        groups.setdefault(int(r["t_s"] // width_s), []).append(r["rss_mb"])
    parts = [f"{sum(g) / len(g):.0f}/{max(g):.0f}" for _, g in sorted(groups.items())]
    return f"RSS by {width_s / 60:.3g}-minute window, mean/max MB: {' '.join(parts)}"


def plot(path: Path, rows: list[dict[str, float]], marks: list[tuple[float, str]]) -> None:
    """Memory, fds/threads and the outputs' queues over time, faults marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG (pip install matplotlib)")
        return
    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    for key in ("rss_mb", "uss_mb", "pss_mb"):
        axes[0].plot(t, [r[key] for r in rows], label=key)
    axes[0].set_ylabel("MB")
    for key in ("fds", "threads"):
        axes[1].plot(t, [r[key] for r in rows], label=key)
    for key in ("outbox", "backlog", "passes", "reads_held"):
        axes[2].plot(t, [r[key] for r in rows], label=key)
    axes[2].set_xlabel("minutes")
    for ax in axes:
        for at, _ in marks:
            ax.axvline(at / 60, color="grey", lw=0.6, ls=":")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    for at, what in marks:
        axes[0].annotate(what, (at / 60, axes[0].get_ylim()[1]), rotation=90, fontsize=6,
                         va="top", ha="right")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
