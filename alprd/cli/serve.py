"""`alprd build`, `warmup`, `detect` and `run`: engines built, files read, the
daemon started."""

from __future__ import annotations

import argparse
import sys

from alprd import config as cfgmod
from alprd.cli.common import load, log, served_store, serving
from alprd.exitcodes import ExitCode
from alprd.hashing import sha256_file


def cmd_build(args: argparse.Namespace) -> int:
    from alprd.engines import commands, manager

    overrides = manager.Overrides(
        backend=args.backend,
        precision=args.precision,
        workspace_gb=args.workspace,
        batch_size=args.batch_size,
        calibration=args.calibration.resolve() if args.calibration else None,
    )
    roles = manager.roles_from(args.models)
    config = serving(args)
    outcomes = commands.build(config, roles, overrides, force=args.force)
    ok = all(o.status in ("current", "built") for o in outcomes)
    return ExitCode.OK if ok else ExitCode.ENGINE


def cmd_warmup(args: argparse.Namespace) -> int:
    from alprd.engines import commands, manager

    base = load(args)
    store = served_store(base)
    config = serving(args)
    roles = manager.roles_from(["all"])
    outcomes, loaded = commands.warmup(config, roles)
    # A model that is itself at fault (dropped while the daemon was stopped) is
    # remembered as rejected, as the daemon would: its role's last good model is
    # warmed instead, and the daemon will serve that without trying the bad one.
    faulty = [o for o in outcomes if o.model_fault]
    for o in faulty:
        source = getattr(config.models, o.role).source
        try:
            store.reject(o.role, sha256_file(source), o.message)
        except OSError:
            continue
    if faulty:
        again = store.overlay(base)[0]
        retry = [o.role for o in faulty if getattr(again.models, o.role).source != getattr(
            config.models, o.role).source]  # fmt: skip
        if retry:
            log.warning("warmup_last_good", models=",".join(retry),
                        reason="; ".join(o.message for o in faulty))  # fmt: skip
            more, loaded_more = commands.warmup(again, retry)
            outcomes += more
            loaded += loaded_more
    ok = len(loaded) == len(roles)
    log.info(
        "warmup_finished" if ok else "warmup_failed",
        built=sum(o.status == "built" for o in outcomes),
        loaded=len(loaded),
        of=len(roles),
    )
    return ExitCode.OK if ok else ExitCode.ENGINE


def cmd_detect(args: argparse.Namespace) -> int:
    from alprd import plates
    from alprd.engines.base import EngineError
    from alprd.pipeline import offline

    config = load(args)
    problem = plates.unknown(args.regions or [], config.plates.formats)
    if problem:
        print(f"error: --region: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    options = offline.DetectOptions(
        json=args.json, save=args.save, fps=args.fps, regions=args.regions
    )
    try:
        failed = offline.run(config, args.inputs, options)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.ENGINE
    return ExitCode.OK if failed == 0 else ExitCode.FAILURE


def cmd_run(args: argparse.Namespace) -> int:
    from alprd.service import Service

    located = cfgmod.find_config(getattr(args, "config", None))
    try:
        return Service(located.path.resolve()).run()
    except Exception:  # unexpected (the loop's own are caught there): logged, exit 70
        log.exception("alprd_crashed")
        return ExitCode.FATAL
