"""An engine build in a child process (``python -m alprd.engines.worker``): a crash,
OOM or segfault of the runtime ends the child, not the daemon; the child dies with
its parent, is niced, cancelled and timed out; its progress and result come back
over its stdout as JSON lines."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alprd.engines import cache, worker
from alprd.engines.base import BuildRequest
from alprd.engines.validate import Validation
from alprd.log import get_logger

log = get_logger("alprd.engines")


@dataclass
class ChildResult:
    error: str = ""
    cancelled: bool = False
    rejected: bool = False  # the child refused the model (worker.EXIT_REJECTED)
    validation: Validation | None = None
    model: dict[str, Any] = field(default_factory=dict)


def run(
    req: BuildRequest,
    engine: Path,
    tmp: Path,
    *,
    timeout_s: float,
    nice: int = 0,
    on_progress: Callable[[str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ChildResult:
    """Build in ``python -m alprd.engines.worker``: a crash, OOM or segfault of the
    runtime ends the child, not us. Its progress is logged as it comes. The child
    dies with us (PR_SET_PDEATHSIG), and when `cancel()` turns true. Its temporary
    files go to a directory of its own (its TMPDIR), removed however it ended."""
    try:
        scratch = cache.scratch_dir(engine)
    except OSError as exc:
        return ChildResult(error=f"no temporary directory for the build: {exc}")
    try:
        return _run(req, tmp, scratch, timeout_s, nice, on_progress, cancel)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(
    req: BuildRequest,
    tmp: Path,
    scratch: Path,
    timeout_s: float,
    nice: int,
    on_progress: Callable[[str], None] | None,
    cancel: Callable[[], bool] | None,
) -> ChildResult:
    parent = os.getpid()

    def prepare() -> None:  # in the child, before exec
        _die_with_parent(parent)
        if nice:
            os.nice(nice)

    proc = subprocess.Popen(
        [sys.executable, "-m", "alprd.engines.worker"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, preexec_fn=prepare,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    stderr_tail: collections.deque[str] = collections.deque(maxlen=20)

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            if line:
                stderr_tail.append(line)
                log.debug("engine_build_output", model=req.role, line=line)

    reader = threading.Thread(target=drain, name=f"build-{req.role}-stderr", daemon=True)
    reader.start()
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout_s, expire)
    timer.start()
    cancelled = threading.Event()

    def watch_cancel() -> None:
        assert cancel is not None
        while proc.poll() is None:
            if cancel():
                cancelled.set()
                proc.kill()
                return
            time.sleep(0.1)

    if cancel is not None:
        threading.Thread(target=watch_cancel, name=f"build-{req.role}-cancel", daemon=True).start()
    result = ChildResult()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(worker.encode_job(req, tmp))
            proc.stdin.close()
        except BrokenPipeError:  # killed (cancel, timeout) before it read its job:
            with contextlib.suppress(OSError):  # its exit status below says why
                proc.stdin.close()
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("type") == "progress":
                log.info(
                    "engine_build_progress",
                    model=req.role,
                    step=msg["message"],
                    elapsed_s=msg["elapsed_s"],
                )
                if on_progress:
                    on_progress(msg["message"])
            elif msg.get("type") == "result":
                result.validation, result.model = Validation(**msg["validation"]), msg["model"]
            elif msg.get("type") == "error":
                result.error = msg["message"]
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
        reader.join(timeout=5)
    result.rejected = code == worker.EXIT_REJECTED
    if cancelled.is_set():
        result.cancelled = True
    elif code != 0 and not result.error:
        if timed_out.is_set():
            why = f"build took longer than engines.build_timeout_s ({timeout_s:g} s)"
        elif code == -signal.SIGKILL:  # what the kernel's OOM killer sends
            why = (
                "build process killed by signal 9 (out of memory? the unit's "
                "MemoryMax= bounds alprd and its build together; see the kernel log)"
            )
        elif code < 0:
            why = f"build process killed by signal {-code}"
        else:
            why = f"build process exited with {code}"
        tail = " | ".join(list(stderr_tail)[-3:])
        result.error = why + (f": {tail}" if tail else "")
    elif code == 0 and result.validation is None:
        result.error = "build process ended without a result"
    return result


def _libc_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()  # resolved here: nothing is imported between fork and exec


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies (an alprd killed with -9
    leaves no build running on its own). A parent that died before the request
    took effect (the child re-parented already) ends the child at once. Best
    effort elsewhere."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)
