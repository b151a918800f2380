"""Engines made ready to serve a role: made current (built if stale) and loaded,
with what their sidecar says about them. Used at start-up, by the background
rebuilder and by reload."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from alprd import config as cfgmod
from alprd.engines import manager
from alprd.engines.base import Engine, EngineError, ModelRejected, Role
from alprd.engines.served import Served
from alprd.observe import EngineStatus


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


def status(
    loaded: LoadedEngine, generation: int, entry: Served | None, last_good: str | None = None
) -> EngineStatus:
    """What the status file says of the engine serving a role. `entry`, the role's
    served-model record, counts only while it holds the bytes the engine was
    built from."""
    if entry is not None and entry.sha256 != loaded.source_sha256:
        entry = None
    return EngineStatus(
        backend=loaded.backend, precision=loaded.precision,
        fingerprint=loaded.fingerprint[:12], generation=generation,
        source=str(entry.source if entry else loaded.source or ""),
        sha256=loaded.source_sha256[:12], since=entry.since if entry else None,
        served=entry.generation if entry else None, last_good=last_good,
    )  # fmt: skip


#: How `load_engine` makes an engine current (build it if stale).
Build = Callable[[manager.Target, cfgmod.Config], manager.Outcome]


def default_build(target: manager.Target, config: cfgmod.Config) -> manager.Outcome:
    return manager.ensure(
        target, timeout_s=config.engines.build_timeout_s, nice=config.engines.build_nice
    )


def roles_of(config: cfgmod.Config, source: Path | None = None) -> list[Role]:
    """The roles `config` serves; with `source`, those served from that model file."""
    roles: list[Role] = (
        ["vehicle", "plate", "ocr"] if config.models.vehicle.enabled else ["plate", "ocr"]
    )
    return [r for r in roles if source is None or getattr(config.models, r).source == source]


#: Settings whose change needs an engine rebuilt or reloaded, per role.
ENGINE_KEYS = ("source", "input_size", "input_height", "backend", "precision", "batch_size")


@dataclass(frozen=True)
class EngineChanges:
    """What a reload from `old` to `new` does to the engines: `added`, roles served
    from now on (loaded at once); `rebuilt`, roles served already whose engine
    settings changed (rebuilt in the background, the old engine serving until the
    swap); `removed`, roles no longer served."""

    added: list[Role]
    rebuilt: list[Role]
    removed: list[Role]


def engine_changes(
    old: cfgmod.Config, new: cfgmod.Config, serving: Iterable[Role]
) -> EngineChanges:
    """The engine side of a reload; `serving`: the roles with an engine now."""
    serving, roles = list(serving), roles_of(new)
    engines_changed = old.engines.model_dump() != new.engines.model_dump()
    added, rebuilt = [], []
    for role in roles:
        if role not in serving:
            added.append(role)
        elif engines_changed or any(
            getattr(getattr(old.models, role), k, None)
            != getattr(getattr(new.models, role), k, None)
            for k in ENGINE_KEYS
        ):
            rebuilt.append(role)
    return EngineChanges(added, rebuilt, [r for r in serving if r not in roles])


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
