"""Real local stand-ins for what a site runs beside alprd, shared by the tests and
`make soak`: an HTTP MJPEG camera that can be unplugged, a mosquitto broker that
can be stopped; and the two helpers every such test needs (a free port, a wait
for a condition rather than a sleep)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
    None,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition", every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class MjpegCamera:
    """An HTTP MJPEG camera on a local port that loops `frames` (JPEG bytes; one
    grey 320x240 frame by default) at `fps`, and can be unplugged and plugged in
    again on the same port."""

    def __init__(self, frames: Sequence[bytes] | None = None, fps: float = 20.0) -> None:
        grey = np.full((240, 320, 3), 90, np.uint8)
        self.frames = list(frames) if frames else [cv2.imencode(".jpg", grey)[1].tobytes()]
        self.fps, self.port = fps, free_port()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam.mjpg"

    def start(self) -> None:
        frames, period = self.frames, 1.0 / self.fps

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=f")
                self.end_headers()
                n, t = 0, time.monotonic()
                with contextlib.suppress(OSError):
                    while not getattr(self.server, "halt", False):
                        jpeg = frames[n % len(frames)]
                        head = b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                        self.wfile.write(head % len(jpeg) + jpeg + b"\r\n")
                        n += 1
                        time.sleep(max(0.0, t + n * period - time.monotonic()))

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.halt = True  # type: ignore[attr-defined]
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Broker:
    """A real mosquitto on a free local port, with persistence (sessions and retained
    messages survive a stop/start, as on a real server); its log in `directory`."""

    def __init__(self, directory: Path) -> None:
        assert MOSQUITTO is not None
        self.port = free_port()
        self.dir = directory
        self.dir.mkdir()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            "log_dest stderr\n",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        with open(self.dir / "broker.log", "ab") as log_file:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError((self.dir / "broker.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
