"""A stand-in for systemd's NOTIFY_SOCKET: an AF_UNIX datagram socket that
collects what a process sends with sd_notify (the light fallback; the real
systemd tests are in test_systemd.py).

Like systemd, it reads every message as it comes (a thread): a datagram socket
left unread holds only `net.unix.max_dgram_qlen` messages (10 by default), after
which the sender's next sd_notify blocks, and with it the daemon's main loop."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self.sock.recv(65536).decode("latin-1"))
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:  # closed
                return

    def pump(self) -> None:
        """Let the reader catch up with what was sent until now."""
        time.sleep(0.15)

    def wait_for(self, predicate, timeout: float = 60.0) -> str:
        """The first message (new or already received) for which predicate holds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for msg in self.messages[seen:]:
                if predicate(msg):
                    return msg
            seen = len(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"no matching sd_notify message in {timeout}s; got {self.messages}")

    def wait_count(self, message: str, n: int, since: int = 0, timeout: float = 60.0) -> float:
        """Wait for `n` copies of `message` after index `since`; the seconds it took."""
        t0 = time.monotonic()
        while self.messages[since:].count(message) < n:
            assert time.monotonic() - t0 < timeout, f"fewer than {n} x {message} in {timeout}s"
            time.sleep(0.02)
        return time.monotonic() - t0

    def close(self) -> None:
        self._closed.set()
        self._reader.join(timeout=2)
        self.sock.close()
