"""Engines made ready to serve a role: made current (built if stale) and loaded,
with what their sidecar says about them. Used at start-up, by the background
rebuilder and by reload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alprd import config as cfgmod
from alprd.engines import manager
from alprd.engines.base import Engine, EngineError, ModelRejected, Role


@dataclass(frozen=True)
class LoadedEngine:
    """An engine ready to serve a role, with what its sidecar says about it."""

    role: Role
    engine: Engine
    names: tuple[str, ...]
    batch: int
    backend: str
    precision: str
    fingerprint: str = ""
    source: Path | None = None  # the model file it was built from
    source_sha256: str = ""
    path: Path | None = None  # the engine file


#: How `load_engine` makes an engine current (build it if stale).
Build = Callable[[manager.Target, cfgmod.Config], manager.Outcome]


def default_build(target: manager.Target, config: cfgmod.Config) -> manager.Outcome:
    return manager.ensure(
        target, timeout_s=config.engines.build_timeout_s, nice=config.engines.build_nice
    )


def roles_of(config: cfgmod.Config) -> list[Role]:
    return ["vehicle", "plate", "ocr"] if config.models.vehicle.enabled else ["plate", "ocr"]


def load_engine(
    config: cfgmod.Config,
    role: Role,
    build: Build = default_build,
    target: manager.Target | None = None,
) -> LoadedEngine:
    """Make `role`'s engine current (building it if stale) and load it; `target`:
    the plan already made for it (the source is then not read again)."""
    target = target or manager.plan(config, role)
    outcome = build(target, config)
    if outcome.status not in ("current", "built"):
        error = ModelRejected if outcome.model_fault else EngineError
        raise error(f"{role} engine: {outcome.status}: {outcome.message}")
    engine, sidecar = manager.load(target)
    req = target.request
    if req.shape.width is not None:  # every batch size it will see, ready now
        # rather than mid-stream
        engine.warm((3, req.shape.height, req.shape.width), req.shape.batch)
    return LoadedEngine(
        role, engine, sidecar.names, req.shape.batch, req.backend, req.precision,
        sidecar.fingerprint, req.source, target.inputs.source_sha256, target.engine,
    )  # fmt: skip
