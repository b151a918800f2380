"""`alprd check-config` and `alprd models ...`: the model files, their history,
rollback and the default models' download."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from alprd import config as cfgmod
from alprd import fetch
from alprd.cli.common import load, log, served_store
from alprd.exitcodes import ExitCode


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
    config = load(args)
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
    store = served_store(config)
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


def cmd_models_history(args: argparse.Namespace) -> int:
    config = load(args)
    store = served_store(config)
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

    config = load(args)
    store = served_store(config)
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
    config = load(args)
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
