"""`alprd build` and `alprd warmup`: what the CLI runs, with a header, progress and
a summary table (rich on a terminal, plain lines otherwise)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from alprd import config as cfgmod
from alprd.engines import manager, registry
from alprd.engines.base import OCR_WIDTHS, EngineError, Role
from alprd.log import get_logger

log = get_logger("alprd.engines")


@dataclass(frozen=True)
class Loaded:
    role: Role
    backend: str
    precision: str
    load_s: float
    first_run_s: float


def _console() -> Console:
    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:  # journal, pipes: wide plain lines, no wrapping
        console = Console(stderr=True, highlight=False, width=160)
    return console


@contextmanager
def _status(console: Console, text: str) -> Iterator[Any]:
    """A live spinner line on a terminal; nothing otherwise (the log lines say it)."""
    ctx = console.status(text) if console.is_terminal else nullcontext()
    with ctx as status:
        yield status


def build(
    config: cfgmod.Config,
    roles: list[Role],
    overrides: manager.Overrides,
    *,
    force: bool = False,
) -> list[manager.Outcome]:
    console = _console()
    choice = registry.choose(overrides.backend or config.engines.backend)
    log.info("backend_selected", backend=choice.backend, reason=choice.reason)
    console.print(
        f"alprd build: models={','.join(roles)} backend={choice.backend} ({choice.reason}) "
        f"precision={overrides.precision or config.engines.precision} "
        f"batch={overrides.batch_size or config.engines.batch_size}" + (" force" if force else "")
    )
    outcomes = [_ensure_one(config, role, overrides, force, console)[1] for role in roles]
    print_summary(console, outcomes)
    return outcomes


def _ensure_one(
    config: cfgmod.Config,
    role: Role,
    overrides: manager.Overrides,
    force: bool,
    console: Console,
) -> tuple[manager.Target | None, manager.Outcome]:
    try:
        target = manager.plan(config, role, overrides)
    except EngineError as exc:
        log.error("engine_plan_failed", model=role, reason=str(exc))
        return None, manager.Outcome(role, "failed", None, "-", "-", message=str(exc))
    label = f"{role} engine ({target.request.backend}, {target.request.precision})"
    with _status(console, f"building {label}") as status:

        def progress(step: str) -> None:
            if status is not None:
                status.update(f"{label}: {step}")

        return target, manager.ensure(
            target,
            force=force,
            timeout_s=config.engines.build_timeout_s,
            nice=config.engines.build_nice,
            on_progress=progress,
        )


def print_summary(console: Console, outcomes: list[manager.Outcome]) -> None:
    table = Table(title="build summary", title_justify="left", show_edge=False)
    for col in ("model", "status", "backend", "precision", "engine", "size", "time"):
        table.add_column(col, justify="right" if col in ("size", "time") else "left")
    for o in outcomes:
        status = o.status + (f" ({','.join(o.reasons)})" if o.status == "built" else "")
        table.add_row(
            o.role,
            status,
            o.backend,
            o.precision,
            o.engine.name if o.engine else "-",
            f"{o.size / 1e6:.1f} MB" if o.size else "-",
            f"{o.build_s:.1f} s" if o.build_s else "-",
        )
    total = sum(o.build_s for o in outcomes)
    table.add_row("total", "", "", "", "", "", f"{total:.1f} s")
    console.print(table)
    for o in outcomes:
        if o.message:
            console.print(f"{o.role}: {o.status}: {o.message}")


def warmup(config: cfgmod.Config, roles: list[Role]) -> tuple[list[manager.Outcome], list[Loaded]]:
    """Make every engine current (building only what is stale), then load each and
    run it once. Returns what was built and what loaded."""
    console = _console()
    overrides = manager.Overrides()
    choice = registry.choose(config.engines.backend)
    log.info("backend_selected", backend=choice.backend, reason=choice.reason)
    outcomes, loaded = [], []
    for role in roles:
        target, outcome = _ensure_one(config, role, overrides, False, console)
        if target is not None and outcome.status in ("current", "built"):
            try:
                loaded.append(load_and_run(target))
            except EngineError as exc:
                log.warning("engine_unloadable", model=role, reason=str(exc))
                target, outcome = _ensure_one(config, role, overrides, True, console)
                if target is not None and outcome.status == "built":
                    try:
                        loaded.append(load_and_run(target))
                    except EngineError as again:
                        log.error("engine_unloadable", model=role, reason=str(again))
        outcomes.append(outcome)
    print_summary(console, outcomes)
    return outcomes, loaded


def load_and_run(target: manager.Target) -> Loaded:
    role = target.request.role
    started = time.monotonic()
    engine, _ = manager.load(target)
    load_s = time.monotonic() - started
    shape = target.request.shape
    x = np.zeros(shape.dims(OCR_WIDTHS[1]), np.float32)
    started = time.monotonic()
    engine.run(x)
    first = time.monotonic() - started
    engine.close()
    log.info(
        "engine_loaded",
        model=role,
        backend=target.request.backend,
        precision=target.request.precision,
        load_s=round(load_s, 3),
        first_run_s=round(first, 3),
    )
    return Loaded(role, target.request.backend, target.request.precision, load_s, first)
