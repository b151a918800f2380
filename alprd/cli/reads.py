"""`alprd reads` and `alprd status`: the stored events and the running daemon's
state."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from alprd.cli.common import denied, load, private
from alprd.exitcodes import ExitCode

#: `alprd status` exit codes, as LSB init scripts: not running; status unknown.
NOT_RUNNING = 3
STATUS_UNKNOWN = 4


def cmd_reads(args: argparse.Namespace) -> int:
    import json
    import time

    from rich.console import Console
    from rich.table import Table

    from alprd.sinks.base import SinkError
    from alprd.sinks.privacy import Concealer
    from alprd.sinks.sqlite import SqliteSink
    from alprd.web.store import parse_time

    config = load(args)
    db = config.outputs.sqlite.path
    if denied(db):
        print(private(db, "reads"), file=sys.stderr)
        return STATUS_UNKNOWN
    if not db.is_file():
        print(f"no store at {db} (outputs.sqlite): nothing read yet", file=sys.stderr)
        return ExitCode.FAILURE
    now = time.time()
    try:
        since = parse_time(args.since, now) if args.since else None
        until = parse_time(args.until, now) if args.until else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        conceal = Concealer.for_reader(config.privacy)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the plate-hash key (privacy.key_file): {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    hashed = conceal.hash(args.plate.upper()) if conceal and (args.plate or "").isalnum() else None
    if args.actions:
        return _actions(db, args, since, until)
    try:
        store = SqliteSink(db)
    except SinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    try:
        rows = store.query(
            since=since, until=until, plate_pattern=args.plate, camera=args.camera,
            limit=args.limit, plate_hash=hashed,
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


def _actions(db: Path, args: argparse.Namespace, since: float | None, until: float | None) -> int:
    """`alprd reads --actions`: the gate's audit records, newest first."""
    import fnmatch
    import json
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from alprd.sinks.gate import read_audit

    rows = [
        f for f in read_audit(db, limit=max(args.limit, 10_000))
        if (since is None or f.time >= since) and (until is None or f.time < until)
        and (args.camera is None or f.camera == args.camera)
        and (args.plate is None or fnmatch.fnmatchcase(f.plate, args.plate.upper()))
    ][: args.limit]  # fmt: skip
    if args.json:
        for f in rows:
            print(json.dumps(asdict(f)))
        return ExitCode.OK
    table = Table(show_edge=False)
    for col in ("time (UTC)", "camera", "plate", "decision", "list", "label", "direction",
                "action", "result", "detail", "ms"):  # fmt: skip
        table.add_column(col)
    for f in rows:
        when = datetime.fromtimestamp(f.time, UTC).isoformat(timespec="seconds")
        table.add_row(
            when, f.camera, f.plate, f.decision, f.list or "", f.label or "", f.direction,
            f.action, f.result, f.detail, f"{f.latency_ms:.0f}",
        )  # fmt: skip
    Console(width=160).print(table)
    return ExitCode.OK


def cmd_status(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from alprd.observe import STATUS_FILE, is_running, read_status

    config = load(args)
    try:
        status = read_status(config.paths.state_dir)
    except PermissionError:
        print(private(config.paths.state_dir / STATUS_FILE, "status"), file=sys.stderr)
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
            f"still {c.still} reads {c.reads} events {c.events} reconnects {c.reconnects} "
            f"decoder {c.decoder}"
        )
    for name, n in status.outbox.items():
        print(f"  outbox {name}: {n} pending")
    for name, n in status.backlog.items():
        print(f"  output {name}: {n} events waiting in memory (it cannot write; see the journal)")
    for ev in status.last_events[-5:]:
        print(f"  event  {ev['first_seen']} {ev['camera']} {ev['plate']} {ev['confidence']:.2f}")
    return ExitCode.OK
