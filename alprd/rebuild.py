"""Background engine rebuilds for the running daemon.

Two kinds of request: a role to rebuild (its source changed, a reload asked for
new settings, a background start-up), and a file dropped into models/ that no
role serves yet, which is first identified (`engines.identify`: a fast look at
its bytes, then a child process) and routed to the role it fits. Requests
coalesce per role: a second request while a role builds yields exactly one more
build, of the newest. A build goes through the same path as start-up (plan ->
fingerprint -> build child at low priority -> validation gate -> atomic install);
the new engine is loaded here, recorded as served (`engines.served`: kept with
its source for last-known-good and rollback) and handed to the main loop, which
swaps it in between frames. A rejected model is logged once
(`model_rejected model=plate file=... reason=...`), the old engine keeps serving,
and the same bytes are not tried again, here or after a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alprd import config as cfgmod
from alprd.bounded import RecentSet
from alprd.engines import fingerprint as fp
from alprd.engines import identify, manager
from alprd.engines.base import EngineError, ModelRejected, Role
from alprd.engines.served import Served, ServedModels, assign, entry_for, now
from alprd.engines.serving import LoadedEngine, load_engine
from alprd.hashing import sha256_file
from alprd.log import get_logger

log = get_logger("alprd.rebuild")

#: Files waiting to be identified at most (a burst of drops; the newest are kept).
MAX_FILES = 16
REMEMBERED = 256  # rejected models (and unfit files) not built or logged again


@dataclass(frozen=True)
class Built:
    loaded: LoadedEngine
    build_s: float
    served: Served | None = None  # what now serves the role (source, settings)
    section: cfgmod.RoleModel | None = None  # the role's settings it was built with


@dataclass(frozen=True)
class _Job:
    role: Role
    entry: Served | None = None  # None: the role's source as the config says
    config: cfgmod.Config | None = None  # None: the config serving when the build starts


class Rebuilder:
    def __init__(
        self,
        get_config: Callable[[], cfgmod.Config],
        serving: Callable[[Role], str | None],
        on_built: Callable[[Built], None],
        samples: Callable[[], Sequence[Path]] = tuple,
        store: ServedModels | None = None,
    ) -> None:
        """`serving(role)`: fingerprint of the engine serving now; `samples()`:
        recent camera frames to validate candidates on (may be empty); `store`:
        where served models are recorded (None: nowhere)."""
        self.get_config, self.serving, self.on_built, self.samples = (
            get_config, serving, on_built, samples,
        )  # fmt: skip
        self.store = store
        self._jobs: dict[Role, _Job] = {}  # insertion order = request order
        self._files: list[Path] = []
        self._cond = threading.Condition()
        self._halt = False
        # what was said once: (role, source sha256) rejected, (file, size, mtime) unfit
        self._rejected: RecentSet[tuple[Role, str]] = RecentSet(REMEMBERED)
        self._unfit: RecentSet[tuple[Path, int, int]] = RecentSet(REMEMBERED)
        self.builds = 0
        self.busy = False
        self._building: str | None = None
        self._thread = threading.Thread(target=self._run, name="rebuild", daemon=True)
        self._thread.start()

    def request(
        self, role: Role, entry: Served | None = None, config: cfgmod.Config | None = None
    ) -> None:
        """Rebuild `role` from its configured source, or from `entry`; with `config`
        (a reload's) instead of the one serving."""
        with self._cond:
            self._jobs.pop(role, None)
            self._jobs[role] = _Job(role, entry, config)
            self._cond.notify()

    def request_file(self, path: Path) -> None:
        """Identify `path`, then rebuild the role it fits from it."""
        with self._cond:
            if path in self._files:
                self._files.remove(path)
            self._files = [*self._files, path][-MAX_FILES:]
            self._cond.notify()

    def pending(self) -> list[str]:
        """Roles waiting for or in a build, and "models" while dropped files wait to
        be identified (for STATUS)."""
        with self._cond:
            out: list[str] = [*self._jobs, *([self._building] if self._building else [])]
            return out + (["models"] if self._files else [])

    def idle(self) -> bool:
        with self._cond:
            return not self._jobs and not self._files and not self.busy

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._halt = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        # Not niced, on purpose: the engine loaded here keeps the threads it
        # starts (ONNX Runtime's pool, OpenVINO's streams) for as long as it
        # serves, and on Linux a thread inherits its creator's niceness, which an
        # unprivileged daemon can never lower again. The heavy work (export,
        # build, validation) runs in the niced build child; here only hashing and
        # the load.
        while True:
            with self._cond:
                while not self._jobs and not self._files and not self._halt:
                    self._cond.wait()
                if self._halt:
                    return
                job: _Job | Path
                if self._files:
                    job = self._files.pop(0)
                else:
                    role = next(iter(self._jobs))
                    job = self._jobs.pop(role)
                self.busy = True
                self._building = job.role if isinstance(job, _Job) else None
            try:
                if isinstance(job, Path):
                    self._route(job)
                else:
                    self._rebuild(job)
            except Exception:  # one bad build must not end the rebuild thread
                log.exception("rebuild_crashed", job=str(job))
            finally:
                with self._cond:
                    self.busy = False
                    self._building = None

    # ------------------------------------------------------------------ routing

    def _route(self, path: Path) -> None:
        try:
            st = path.stat()
        except OSError:
            return  # gone again
        key = (path, st.st_size, st.st_mtime_ns)
        if key in self._unfit:
            return
        config = self.get_config()
        try:
            identity = identify.identify(path)
        except EngineError as exc:
            self._unfit.add(key)
            log.error("model_rejected", file=str(path), reason=str(exc),
                      action="nothing changed; the engines serving keep serving")  # fmt: skip
            return
        routing = identify.route(identity, config.models.vehicle.classes)
        role = routing.role
        if role is None:
            self._unfit.add(key)
            log.warning("model_not_used", file=str(path), reason=routing.why,
                        hint="drop a detector or recogniser; nothing changed")  # fmt: skip
            return
        if config.models.pinned(role):
            self._unfit.add(key)
            pinned = getattr(config.models, role).source
            log.warning(
                "model_not_used", file=str(path), model=role, fits=routing.why,
                reason=f"models.{role}.source is set in the config ({pinned.name})",
                hint=f'remove models.{role}.source from the config (or set it to "{path.name}") '
                "and reload (systemctl reload alprd)",
            )  # fmt: skip
            return
        try:
            sha = sha256_file(path)
        except OSError:
            return
        log.info("model_routed", file=str(path), model=role, why=routing.why)
        self._building = role
        entry = Served(
            role, path, sha, now(), dictionary=routing.dictionary,
            input_height=routing.input_height, input_width=routing.input_width,
        )  # fmt: skip
        self._rebuild(_Job(role, entry))

    # ------------------------------------------------------------------ building

    def _reject(
        self, role: Role, source: Path, sha: str, reason: str, model_fault: bool = True
    ) -> None:
        """Logged once; not tried again while alprd runs, nor after a restart when
        the model itself is at fault."""
        self._rejected.add((role, sha))
        if self.store is not None and model_fault:
            self.store.reject(role, sha, reason)
        log.error(
            "model_rejected", model=role, file=str(source), reason=reason,
            action="the old engine keeps serving",
        )  # fmt: skip

    def _rebuild(self, job: _Job) -> None:
        role = job.role
        config = job.config or self.get_config()
        if job.entry is not None:
            config = assign(config, job.entry)
        source = getattr(config.models, role).source
        problem = identify.precheck(source) if source.is_file() else None
        if problem and (sha := _sha(source)) is not None:  # bytes that are no model
            if (role, sha) in self._rejected:
                log.info("model_unchanged_since_rejection", model=role, file=str(source))
            else:
                self._reject(role, source, sha, f"{source.name}: {problem}")
            return
        samples = tuple(self.samples())
        try:
            target = manager.plan(config, role, manager.Overrides(validation=samples or None))
        except EngineError as exc:  # the file's place, not its bytes (permissions, gone)
            log.error("model_rejected", model=role, file=str(source), reason=str(exc),
                      action="the old engine keeps serving")  # fmt: skip
            return
        sha = target.inputs.source_sha256
        if (role, sha) in self._rejected or (
            self.store is not None and self.store.rejection(role, sha) is not None
        ):
            log.info("model_unchanged_since_rejection", model=role, file=str(source))
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
            quiet=True,  # rejected: one line, below
        )
        if outcome.status == "cancelled":
            log.info("model_build_cancelled", model=role, file=str(source),
                     reason="alprd is stopping")  # fmt: skip
            return
        self.builds += 1
        if outcome.status not in ("built", "current"):
            self._reject(role, source, sha, outcome.message or outcome.status, outcome.model_fault)
            return
        try:
            loaded = load_engine(config, role, lambda t, c: outcome, target)
        except EngineError as exc:
            self._reject(role, source, sha, str(exc), isinstance(exc, ModelRejected))
            return
        entry = job.entry or entry_for(config, role, source, sha)
        if self.store is not None:
            try:
                entry = self.store.record(entry, target.engine)
            except OSError as exc:
                log.warning("model_not_kept", model=role, file=str(source), reason=str(exc),
                            action="serving it; it is not kept for last-known-good")  # fmt: skip
        section = getattr(config.models, role)
        self.on_built(Built(loaded, round(time.monotonic() - started, 1), entry, section))


def _sha(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None
