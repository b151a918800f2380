"""A stand-in for systemd's NOTIFY_SOCKET: an AF_UNIX datagram socket that
collects what a process sends with sd_notify (the light fallback; the real
systemd tests are in test_systemd.py)."""

from __future__ import annotations

import socket
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def pump(self) -> None:
        while True:
            try:
                self.messages.append(self.sock.recv(65536).decode("latin-1"))
            except (TimeoutError, BlockingIOError):
                return

    def wait_for(self, predicate, timeout: float = 60.0) -> str:
        """The first message (new or already received) for which predicate holds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            self.pump()
            for msg in self.messages[seen:]:
                if predicate(msg):
                    return msg
            seen = len(self.messages)
        raise AssertionError(f"no matching sd_notify message in {timeout}s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()
