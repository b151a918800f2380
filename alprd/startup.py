"""Which engine serves each role when the daemon starts (and when a reload brings
a role back): the configured model's engine, built if stale while systemd is told
to extend the start timeout; where that model cannot serve (its file went bad, a
build is rejected), the last model that served the role (its kept copy), said
loudly; with ``service.startup = "background"``, something that serves now while
the configured engine builds behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from alprd import config as cfgmod
from alprd.engines import cache, manager, served
from alprd.engines.base import EngineError, ModelRejected, Role
from alprd.engines.served import ServedModels
from alprd.engines.serving import Build, LoadedEngine, default_build, load_engine, roles_of
from alprd.log import get_logger
from alprd.systemd import Notifier

log = get_logger("alprd.service")


class Startup:
    """`served`: the served-models record; `cancelled()`: a stop was asked for
    (cancels a build in progress); `build_later(role)`: build the configured
    engine in the background (background start-up)."""

    def __init__(
        self,
        served: ServedModels,
        notifier: Notifier,
        cancelled: Callable[[], bool],
        build_later: Callable[[Role], None],
    ) -> None:
        self.served = served
        self.notifier = notifier
        self.cancelled = cancelled
        self.build_later = build_later
        #: role -> why its last good model serves instead of the configured one
        self.last_good: dict[Role, str] = {}

    def overlay(self, config: cfgmod.Config) -> cfgmod.Config:
        """`config` with each role served as the served-models record says (a
        dropped model routed there; its kept copy where the file went bad)."""
        effective, choices = self.served.overlay(config)
        for role, choice in choices.items():
            if choice.last_good and role in roles_of(effective):
                self.last_good[role] = choice.why
                log.warning(
                    "model_last_good", model=role, reason=choice.why,
                    serving=f"{choice.source.name} {choice.entry.sha256[:12]} (kept copy)"
                    if choice.entry else str(choice.source),
                    hint=f"drop a good model into {config.paths.models_dir} to replace it",
                )  # fmt: skip
        return effective

    def engines(self, config: cfgmod.Config) -> tuple[cfgmod.Config, dict[Role, LoadedEngine]]:
        """Every role's engine, and the config as it then serves (a role served by
        its last good model has that model's settings)."""
        roles = roles_of(config)
        engines: dict[Role, LoadedEngine] = {}
        for i, role in enumerate(roles, start=1):
            self.notifier.status(f"loading engines {i}/{len(roles)} ({role})")
            if config.service.startup == "background":
                engines[role] = self.serve_now(config, role)
            else:
                config, engines[role] = self.load_role(config, role, self.build_extending)
        return config, engines

    def load_role(
        self, config: cfgmod.Config, role: Role, build: Build = default_build
    ) -> tuple[cfgmod.Config, LoadedEngine]:
        """`role`'s engine as `config` says, recorded as served; where that model
        cannot serve, the last model that served the role, with the config that
        serves it. Raises EngineError only when no model can serve the role."""
        sha = known = None
        try:
            target = manager.plan(config, role)  # reads the source once: its sha256
            sha = target.inputs.source_sha256
            known = self.served.rejection(role, sha)
            if known is not None:
                raise EngineError(f"{target.request.source.name} was rejected before: {known}")
            loaded = load_engine(config, role, build, target)
        except EngineError as exc:
            if self.cancelled():
                raise
            if sha is not None and known is None and isinstance(exc, ModelRejected):
                self.served.reject(role, sha, str(exc))  # not tried again at the next start
            fallback = self._last_good_engine(config, role, str(exc), sha, build)
            if fallback is None:
                raise
            return fallback
        self._record(role, config, loaded)
        return config, loaded

    def _last_good_engine(
        self, config: cfgmod.Config, role: Role, reason: str, bad_sha: str | None, build: Build
    ) -> tuple[cfgmod.Config, LoadedEngine] | None:
        store = self.served
        current = store.current(role)
        for entry in [current, *store.history(role)] if current else []:
            kept = store.kept(entry)
            if entry.sha256 == bad_sha or not kept.is_file():
                continue
            assigned = served.assign(config, store.settings(entry, kept, kept=True))
            try:
                loaded = load_engine(assigned, role, build)
            except EngineError as exc:
                log.warning("model_last_good_failed", model=role, file=str(kept), reason=str(exc))
                continue
            self.last_good[role] = reason
            log.warning(
                "model_last_good", model=role, reason=reason,
                serving=f"{entry.source.name} {entry.sha256[:12]} (kept copy, since {entry.since})",
                hint="drop a good model into the models directory to replace it",
            )  # fmt: skip
            return assigned, loaded
        return None

    def _record(self, role: Role, config: cfgmod.Config, loaded: LoadedEngine) -> None:
        """Keep what serves `role` (its source and engine) for last-known-good."""
        if loaded.source is None or not loaded.source_sha256:
            return
        cur = self.served.current(role)
        if (
            cur is not None
            and cur.sha256 == loaded.source_sha256
            and loaded.source in (cur.source, self.served.kept(cur))
        ):
            return  # kept already
        entry = served.entry_for(config, role, loaded.source, loaded.source_sha256)
        try:
            self.served.record(entry, loaded.path)
        except OSError as exc:
            log.warning("model_not_kept", model=role, file=str(loaded.source), reason=str(exc),
                        action="serving it; it is not kept for last-known-good")  # fmt: skip

    def build_extending(self, target: manager.Target, config: cfgmod.Config) -> manager.Outcome:
        """Build if stale, telling systemd to extend the start timeout meanwhile."""
        if not cache.check(target.engine, target.inputs):
            return manager.Outcome(
                target.request.role, "current", target.engine, target.request.backend,
                target.request.precision,
            )  # fmt: skip
        extend = config.service.extend_timeout_s
        req = target.request
        label = f"building {req.role} engine ({req.backend}, {req.precision})"
        done = threading.Event()
        started = time.monotonic()

        def tick() -> None:
            while True:
                self.notifier.extend_timeout(extend)
                self.notifier.status(f"{label} {time.monotonic() - started:.0f}s")
                if done.wait(extend / 3):
                    return

        ticker = threading.Thread(target=tick, name="extend-timeout", daemon=True)
        ticker.start()
        try:
            return manager.ensure(
                target, timeout_s=config.engines.build_timeout_s, nice=config.engines.build_nice,
                cancel=self.cancelled,
            )  # fmt: skip
        finally:
            done.set()
            ticker.join(timeout=5)

    def serve_now(self, config: cfgmod.Config, role: Role) -> LoadedEngine:
        """Background start-up: the configured engine if current; else something
        that serves now (`manager.interim`: the torch backend on the GPU where the
        engines are TensorRT, else ONNX Runtime on the CPU, built first if need be,
        which takes seconds), while the configured one builds behind."""
        target = manager.plan(config, role)
        if not cache.check(target.engine, target.inputs):
            return load_engine(config, role, target=target)  # planned once
        choices = manager.interim(target.request.backend)
        for backend, precision in choices:
            quick = config.model_copy(deep=True)
            getattr(quick.models, role).backend = backend
            getattr(quick.models, role).precision = precision
            try:
                loaded = load_engine(quick, role, self.build_extending)
            except EngineError as exc:
                if backend == choices[-1][0]:
                    raise
                log.warning("engine_interim_unavailable", model=role, backend=backend,
                            reason=str(exc))  # fmt: skip
                continue
            log.info("engine_interim", model=role, backend=backend, building=target.request.backend)
            break
        self.build_later(role)  # the same path as a dropped model
        return loaded
