"""Background engine rebuilds for the running daemon.

Requests coalesce per role: a second request while a role builds yields exactly
one more build, of the newest file. A build goes through the same path as
start-up (plan -> fingerprint -> build child at low priority -> validation gate ->
atomic install); a new engine is loaded here and handed to the main loop, which
swaps it in between frames. A rejected model is logged
(`model_rejected model=plate reason=...`), the old engine keeps serving, and the
same file is not retried until its bytes change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alprd import config as cfgmod
from alprd.engines import fingerprint as fp
from alprd.engines import manager
from alprd.engines.base import EngineError, Role
from alprd.log import get_logger
from alprd.pipeline.recognizer import LoadedEngine, load_engine

log = get_logger("alprd.rebuild")


@dataclass(frozen=True)
class Built:
    loaded: LoadedEngine
    build_s: float


class Rebuilder:
    def __init__(
        self,
        get_config: Callable[[], cfgmod.Config],
        serving: Callable[[Role], str | None],
        on_built: Callable[[Built], None],
        samples: Callable[[], Sequence[Path]] = tuple,
    ) -> None:
        """`serving(role)`: fingerprint of the engine serving now; `samples()`:
        recent camera frames to validate candidates on (may be empty)."""
        self.get_config, self.serving, self.on_built, self.samples = (
            get_config, serving, on_built, samples,
        )  # fmt: skip
        self._pending: list[Role] = []
        self._cond = threading.Condition()
        self._halt = False
        self._rejected: set[tuple[Role, str]] = set()  # (role, source sha256)
        self.builds = 0
        self.busy = False
        self._thread = threading.Thread(target=self._run, name="rebuild", daemon=True)
        self._thread.start()

    def request(self, role: Role) -> None:
        with self._cond:
            if role not in self._pending:
                self._pending.append(role)
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self.busy

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._halt = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._halt:
                    self._cond.wait()
                if self._halt:
                    return
                role = self._pending.pop(0)
                self.busy = True
            try:
                self._rebuild(role)
            except Exception:  # one bad build must not end the rebuild thread
                log.exception("rebuild_crashed", model=role)
            finally:
                with self._cond:
                    self.busy = False

    def _rebuild(self, role: Role) -> None:
        config = self.get_config()
        samples = tuple(self.samples())
        try:
            target = manager.plan(config, role, manager.Overrides(validation=samples or None))
        except EngineError as exc:
            log.error("model_rejected", model=role, reason=str(exc))
            return
        key = (role, target.inputs.source_sha256)
        if key in self._rejected:
            log.info("model_unchanged_since_rejection", model=role, file=str(target.request.source))
            return
        new_fp = fp.fingerprint(target.inputs)
        if self.serving(role) == new_fp:
            log.debug("engine_already_serving", model=role)
            return
        started = time.monotonic()
        outcome = manager.ensure(
            target,
            timeout_s=config.engines.build_timeout_s,
            nice=max(config.engines.build_nice, 10),  # never ahead of the running pipeline
            cancel=lambda: self._halt,  # a stop kills the build child
        )
        if outcome.status == "cancelled":
            return
        self.builds += 1
        if outcome.status not in ("built", "current"):
            self._rejected.add(key)
            log.error(
                "model_rejected", model=role, file=str(target.request.source),
                reason=outcome.message or outcome.status, action="the old engine keeps serving",
            )  # fmt: skip
            return
        try:
            loaded = load_engine(config, role, lambda t, c: outcome)
        except EngineError as exc:
            self._rejected.add(key)
            log.error("model_rejected", model=role, reason=str(exc))
            return
        self.on_built(Built(loaded, round(time.monotonic() - started, 1)))
