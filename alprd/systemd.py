"""sd_notify for the daemon: READY, STATUS, EXTEND_TIMEOUT_USEC, WATCHDOG,
RELOADING, STOPPING. A no-op outside systemd (no $NOTIFY_SOCKET); never raises.

STATUS is kept ASCII: `sdnotify` encodes as latin-1 and silently drops a message
it cannot encode.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Mapping

import sdnotify


def ascii_only(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii").replace("\n", " ")


SENT_KEPT = 256


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._sd = sdnotify.SystemdNotifier() if self.enabled else None
        self.watchdog_s = watchdog_interval(env)
        # the last messages sent, for the health line and tests (WATCHDOG=1 every
        # half WatchdogSec for months: a bounded history)
        self.sent: deque[str] = deque(maxlen=SENT_KEPT)

    def _send(self, *lines: str) -> None:
        message = "\n".join(lines)
        self.sent.append(message)
        if self._sd is not None:
            self._sd.notify(message)

    def status(self, text: str) -> None:
        self._send(f"STATUS={ascii_only(text)}")

    def ready(self, status: str) -> None:
        self._send("READY=1", f"STATUS={ascii_only(status)}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self._send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when
    systemd does not watch us."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.05, int(usec) / 1e6 / 2)
    except ValueError:
        return None
