"""The two ways the tests run the daemon: `alprd run` in a child process talking
to a stand-in NOTIFY_SOCKET (`DaemonProcess`), and `Service` in a thread of the
test's own process (`running`, which yields a `ServiceThread`: the service itself,
every frame it processed and everything it logged)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from alprd.service import Service
from alprd.systemd import Notifier
from support.notify_socket import NotifySocket

# --------------------------------------------------------------------------- a child process


class DaemonProcess:
    """`alprd run --config CONFIG --log-format json` in a child process, its sd_notify
    messages going to `sock` (and WATCHDOG_USEC set, unless `watchdog_usec` is
    None or 0), its JSON log lines read from stderr as they come."""

    def __init__(self, config: Path, sock: NotifySocket, watchdog_usec: int | None = 1_000_000):
        env = {**os.environ, "NOTIFY_SOCKET": str(sock.path)}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alprd", "run", "--config", str(config), "--log-format", "json"],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.sock = sock
        # Read as it comes: a pipe left full would block the daemon's next log line
        # (and with it the main loop), which no real journal does.
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def events(self) -> list[dict]:
        """The JSON log lines so far."""
        out = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_event(self, event: str, timeout: float = 60, **match: object) -> dict:
        """The first log line `event` (with fields `match`), waiting for it to come."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events():
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                    return e
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {event}"
            assert time.monotonic() < deadline, f"no {event} {match} within {timeout}s"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, list[dict]]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.proc.returncode, self.events()


# --------------------------------------------------------------------------- a thread


class ServiceThread:
    """The daemon running in a thread (see `running`): the `service`, every frame it
    processed as (camera, monotonic time) in `frames`, and what it logged in `logs`
    (structlog's captured event dicts), all growing while it runs."""

    def __init__(
        self, service: Service, frames: list[tuple[str, float]], logs: list[dict[str, Any]]
    ) -> None:
        self.service, self.frames, self.logs = service, frames, logs

    def wait_log(
        self, event: str, n: int = 1, timeout: float = 60, **match: Any
    ) -> list[dict[str, Any]]:
        """The log events `event` (with fields `match`) once there are `n` of them,
        waiting for them to come."""

        def found() -> list[dict[str, Any]]:
            return [
                e
                for e in self.logs
                if e["event"] == event and all(e.get(k) == v for k, v in match.items())
            ]

        deadline = time.monotonic() + timeout
        while len(got := found()) < n:
            assert time.monotonic() < deadline, (
                f"no {n} x {event} {match} in {timeout}s: {[e['event'] for e in self.logs]}"
            )
            time.sleep(0.05)
        return got

    def times(self, camera: str | None = None, since: float = 0.0) -> list[float]:
        """When the frames of `camera` (of every camera: None) came, from `since` on."""
        return [t for c, t in self.frames if (camera is None or c == camera) and t >= since]

    def max_gap(self, since: float, camera: str | None = None) -> float:
        """The longest time between two frames of `camera` (of every camera: None)
        from `since` on."""
        times = self.times(camera, since)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def rate(self, window: float, camera: str | None = None) -> float:
        """Frames a second over the next `window` seconds (waits for them)."""
        start = time.monotonic()
        time.sleep(window)
        return len(self.times(camera, start)) / window

    @staticmethod
    def gap_limit(steady: float, gap: float = 0.0) -> float:
        """The longest gap between frames that still counts as uninterrupted: eight
        frame periods at the rate measured before, or three times the longest gap
        seen then (a machine busy with other work serves frames in bursts, and a
        longer time holds longer gaps), 1 s at least (a busy 2-core machine gave
        0.78 s at 8 frames/s)."""
        return max(1.0, 8 / steady, 3 * gap)

    def measure_gap_limit(self, camera: str, window: float = 3.0) -> float:
        """The longest gap between a camera's frames that still counts as
        uninterrupted, from how the camera is served over the next `window` seconds
        (measured, so it takes that long): eight frame periods at that rate, or three
        times the longest gap seen there, 1 s at least (`gap_limit` of what it
        measures). A 10 fps camera on an idle machine: 1 s; on a machine busy with
        other work (frames served in bursts), a bound on what the machine itself
        does to the camera over the longer time of the fault (three suites at once
        on 2 cores: 0.55-0.93 s gaps in 3 s without any fault, 1.7-1.9 s over a 20 s
        build; a loop that waited for the build would stop for all of it)."""
        start = time.monotonic()
        time.sleep(window)  # a rate is measured over time
        n = len(self.times(camera, start))
        assert n, f"no frame of {camera} in {window} s"
        return max(1.0, 8 * window / n, 3 * self.max_gap(start, camera))


@contextlib.contextmanager
def running(config: Path, *, min_frames: int = 0, timeout: float = 180) -> Iterator[ServiceThread]:
    """The daemon of `config` in a thread (`Service.run`, no NOTIFY_SOCKET), its
    logs captured: once it is ready (READY=1) and has processed `min_frames` frames,
    both within `timeout` seconds; stopped (and its thread ended) on leaving."""
    frames: list[tuple[str, float]] = []
    service = Service(
        config, notifier=Notifier({}), on_frame=lambda c, i: frames.append((c, time.monotonic()))
    )
    thread = threading.Thread(target=service.run, daemon=True)
    with capture_logs() as logs:
        thread.start()
        deadline = time.monotonic() + timeout
        while not any(m.startswith("READY=1") for m in service.notifier.sent):
            assert thread.is_alive(), [e["event"] for e in logs]  # it ended at start-up
            assert time.monotonic() < deadline, (
                f"no READY=1 in {timeout}s: {[e['event'] for e in logs]}"
            )
            time.sleep(0.05)
        assert thread.is_alive(), [e["event"] for e in logs]
        try:
            while len(frames) < min_frames:
                assert time.monotonic() < deadline, f"fewer than {min_frames} frames in {timeout}s"
                time.sleep(0.05)
            yield ServiceThread(service, frames, logs)
        finally:
            service.request_stop()
            thread.join(timeout=30)
    assert not thread.is_alive()
