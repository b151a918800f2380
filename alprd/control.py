"""What the main loop is asked to do: stop (SIGTERM, SIGINT) or reload (SIGHUP),
by a signal or from inside the process (tests, benchmarks, an embedding program).
A signal handler only records the request and wakes the loop (no logging, no
locks); the loop takes the requests in order and acts on them."""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from types import FrameType

STOP = (signal.SIGTERM, signal.SIGINT)


class Control:
    def __init__(self) -> None:
        #: set by every request, and by whoever has work for the loop (a built engine)
        self.wake = threading.Event()
        self.stop_requested = False  # cancels a build in progress
        self.stopping = False  # the loop has begun to stop: a second Ctrl-C exits
        self._asked: deque[int] = deque()

    def install(self) -> None:
        """Take SIGTERM, SIGINT and SIGHUP; only from the main thread (an embedded
        service is stopped with `stop`)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.stopping:
            os._exit(130)  # a second Ctrl-C forces the exit
        self.ask(signum)

    def ask(self, signum: int) -> None:
        if signum in STOP:
            self.stop_requested = True
        self._asked.append(signum)
        self.wake.set()

    def next(self) -> int | None:
        """The oldest request not yet taken, or None."""
        return self._asked.popleft() if self._asked else None

    @property
    def stop_pending(self) -> bool:
        """The latest request is a stop."""
        return bool(self._asked) and self._asked[-1] in STOP
