"""What the commands share: loading the config (as the daemon serves it),
reporting its problems, the served-models store, unreadable private files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from alprd import config as cfgmod
from alprd import log as logmod
from alprd.engines.served import ServedModels, served_models

log = logmod.get_logger("alprd.cli")


def print_problems(exc: cfgmod.ConfigError) -> None:
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr)
    if len(exc.problems) > 1:
        print(f"{len(exc.problems)} errors", file=sys.stderr)


def load(args: argparse.Namespace) -> cfgmod.Config:
    located = cfgmod.find_config(getattr(args, "config", None))
    config = cfgmod.load(located.path)
    log.debug("config_loaded", path=str(located.path), found_by=located.how)
    return config


def serving(args: argparse.Namespace) -> cfgmod.Config:
    """The config as the daemon serves it: each role's model as recorded in
    state_dir/served (a dropped model routed there; its kept copy where the file
    went bad)."""
    config = load(args)
    try:
        return served_store(config).overlay(config)[0]
    except PermissionError:
        return config


def served_store(config: cfgmod.Config) -> ServedModels:
    return served_models(config)


def denied(path: Path) -> bool:
    """Whether `path`, or a folder above it, may not be read by this user."""
    try:
        path.stat()
    except PermissionError:
        return True
    except OSError:
        return False
    return not os.access(path, os.R_OK)


def private(path: Path, command: str) -> str:
    return (
        f"alprd {command}: cannot read {path}: permission denied. The service's state "
        "directory is readable by root and the service only (systemd DynamicUser): "
        f"run `sudo alprd {command}`"
    )
