"""`alprd lists`: the plate lists the daemon decides by (allow / deny), changed
while it runs: `add`, `remove`, `show`, `import` a CSV file, `export` one."""

from __future__ import annotations

import argparse
import sys
from datetime import tzinfo
from pathlib import Path

from alprd.cli.common import denied, load, private
from alprd.exitcodes import ExitCode
from alprd.settings.base import zone_of
from alprd.sinks.base import SinkError
from alprd.sinks.lists import ListStore, entry, normal, read_csv, write_csv


def cmd_lists(args: argparse.Namespace) -> int:
    config = load(args)
    path = config.lists.path
    if denied(path):
        print(private(path, f"lists {args.action}"), file=sys.stderr)
        return ExitCode.FAILURE
    zone = zone_of(config.lists.time_zone)
    if args.action in ("show", "export") and not path.is_file():
        print(f"no plate lists yet ({path}): add one with `alprd lists add LIST PLATE`",
              file=sys.stderr)  # fmt: skip
        return ExitCode.OK if args.action == "show" else ExitCode.FAILURE
    try:
        store = ListStore(path)
    except SinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    try:
        if args.action == "add":
            e = entry(args.plate, args.label, args.valid_from, args.until, args.days, args.hours,
                      str(args.distance), zone, args.list, args.kind or "allow")  # fmt: skip
            store.add(args.list, [e], args.kind)
            print(f"{e.plate} added to {args.list}")
        elif args.action == "import":
            text = sys.stdin.read() if str(args.file) == "-" else Path(args.file).read_text()
            entries = read_csv(text, zone)
            n = store.add(args.list, entries, args.kind)
            print(f"{n} entries imported into {args.list}")
        elif args.action == "remove":
            plate = normal(args.plate) if args.plate else None
            n = store.remove(args.list, plate)
            if not n and plate:
                print(f"error: {plate} is not in list {args.list}", file=sys.stderr)
                return ExitCode.FAILURE
            print(f"{n} entries removed from {args.list}" + ("" if plate else " (list deleted)"))
        elif args.action == "export":
            sys.stdout.write(write_csv(store.entries(args.list), zone))
        else:
            _show(store, args.list, zone)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE if isinstance(exc, ValueError) else ExitCode.FAILURE
    finally:
        store.close()
        store.hand_to_owner()
    return ExitCode.OK


def _show(store: ListStore, name: str | None, zone: tzinfo) -> None:
    for list_name, kind, count in store.lists():
        if name is None or name == list_name:
            print(f"# {list_name} ({kind}, {count} plates)")
            print(write_csv(store.entries(list_name), zone), end="")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lists", parents=[common], help="plate lists: allow and deny")
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = acts.add_parser("add", parents=[common], help="add a plate to a list (made if new)")
    a.add_argument("list", help="the list's name, e.g. residents")
    a.add_argument("plate")
    a.add_argument("--kind", choices=["allow", "deny"], help="for a new list (default allow)")
    a.add_argument("--label", default="", help="who or what it is")
    a.add_argument(
        "--from",
        dest="valid_from",
        default="",
        metavar="WHEN",
        help="valid from (2026-12-31 or 2026-12-31T18:00, the lists' time zone)",
    )
    a.add_argument("--until", default="", metavar="WHEN", help="valid until (exclusive)")
    a.add_argument("--days", default="", help="weekdays it holds, e.g. mon-fri or sat,sun")
    a.add_argument("--hours", default="", help="hours it holds, e.g. 07:00-19:00")
    a.add_argument(
        "--distance",
        type=float,
        default=0.0,
        help="edits a read may differ by (a 0/O-style swap counts lists.confusion_cost)",
    )
    r = acts.add_parser("remove", parents=[common], help="remove a plate, or a whole list")
    r.add_argument("list")
    r.add_argument("plate", nargs="?", help="without it: the whole list")
    s = acts.add_parser("show", parents=[common], help="the lists and their plates")
    s.add_argument("list", nargs="?")
    i = acts.add_parser("import", parents=[common], help="add the rows of a CSV file to a list")
    i.add_argument("list")
    i.add_argument(
        "file",
        help="CSV with a header: plate,label,from,until,days,hours,distance (- for standard input)",
    )
    i.add_argument("--kind", choices=["allow", "deny"], help="for a new list (default allow)")
    e = acts.add_parser("export", parents=[common], help="a list (or all) as CSV")
    e.add_argument("list", nargs="?")
    for q in (a, r, s, i, e):
        q.set_defaults(func=cmd_lists)
