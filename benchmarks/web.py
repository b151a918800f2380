"""`make bench-web`: `alprd web`'s searches on a large store, and what they cost the
daemon's writes.

A synthetic store of `--events` events (default 10 million: 8 cameras over two
years, plates of several national shapes, each record as the daemon stores it) is
made once (kept at `--store` for the next run), then each search is timed in the
web process's own code (`alprd.web.store.EventStore`, median and worst of
`--repeat`), and the daemon's event write rate (`SqliteSink.write`, fully
synchronous, as `make bench-outputs` writes) is measured alone and while another
process runs searches without pause: the ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sqlite3
import statistics
import string
import time
from pathlib import Path
from typing import Any

from alprd.sinks.base import iso_utc
from alprd.sinks.sqlite import SqliteSink
from alprd.web.store import EventStore, Search

START = 1_735_689_600.0  # 2025-01-01
SPAN_S = 2 * 365 * 86400
SHAPES = ("LLNNNLL", "LLLNNNN", "NLLLNNN", "LLNNLL", "NNNLLL", "LNNNLL", "LLLNLNN")


def plate(rng: random.Random) -> str:
    return "".join(
        rng.choice(string.ascii_uppercase if c == "L" else string.digits)
        for c in rng.choice(SHAPES)
    )


def make_store(path: Path, n: int, seed: int = 7) -> float:
    """The store with `n` events, first seen in time order; seconds it took."""
    t0 = time.perf_counter()
    SqliteSink(path).close()  # the schema, as the daemon makes it
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    rng = random.Random(seed)
    batch = 100_000
    for start in range(0, n, batch):
        rows = []
        for i in range(start, min(n, start + batch)):
            t = START + SPAN_S * i / n
            p = plate(rng)
            record = {
                "id": f"{i:032x}", "camera": f"cam{i % 8}", "plate": p,
                "confidence": 0.9, "char_confidences": [0.9] * len(p),
                "plate_box": [10.0, 10.0, 100.0, 40.0], "vehicle_box": [0.0, 0.0, 300.0, 300.0],
                "vehicle_class": "car", "reads": 7, "known_label": None, "known_plate": None,
                "format": "", "first_seen": iso_utc(t), "last_seen": iso_utc(t + 2),
                "snapshots": [],
            }  # fmt: skip
            rows.append((record["id"], record["camera"], p, 0.9, t, t + 2, None, "",
                         json.dumps(record, separators=(",", ":"))))  # fmt: skip
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO reads (id, camera, plate, confidence, first_seen, last_seen,"
            " known_label, format, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
        print(f"  {min(n, start + batch):,} events", end="\r", flush=True)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t0


def searches(store: EventStore) -> dict[str, Search]:
    """The searches a person makes, on plates that are in the store."""
    newest = store.search(Search(limit=1)).events[0]
    some = store.search(Search(limit=1, until=START + SPAN_S / 3)).events[0]["plate"]
    near = some[:-1] + ("0" if some[-1] != "0" else "1")  # one character misread
    day = START + SPAN_S / 2
    return {
        "newest page": Search(limit=50),
        "exact plate": Search(plate=some, limit=50),
        f"prefix {some[:3]}*": Search(plate=some[:3] + "*", limit=50),
        f"infix *{some[2:5]}*": Search(plate=f"*{some[2:5]}*", limit=50),
        "fuzzy, 1 edit": Search(plate=near, fuzzy=1, limit=50),
        "camera, one day": Search(camera=newest["camera"], since=day, until=day + 86400),
        "second page": Search(limit=50, after=store.search(Search(limit=50)).next),
    }


def timed(store: EventStore, search: Search, repeat: int) -> tuple[float, float, int]:
    times = []
    found = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        found = len(store.search(search).events)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, max(times) * 1000, found


def _search(path: str, every_s: float, stop: Any) -> None:
    """Each of `searches` in turn, one every `every_s` (0: without pause)."""
    store = EventStore(Path(path))
    kinds = list(searches(store).values())
    while not stop.is_set():
        for s in kinds:
            store.search(s)
            if every_s:
                time.sleep(every_s)


def write_rate(path: Path, seconds: float) -> float:
    """Events a second `SqliteSink.write` stores (each its own fsynced commit)."""
    sink = SqliteSink(path)
    n, t0 = 0, time.perf_counter()
    base = time.time()
    while time.perf_counter() - t0 < seconds:
        t = base + n
        record = {
            "id": f"w{base}-{n}",
            "camera": "cam0",
            "plate": "WR1TE00",
            "confidence": 0.9,
            "first_seen": iso_utc(t),
            "last_seen": iso_utc(t + 1),
            "snapshots": [],
        }
        sink.write(record)
        n += 1
    sink.close()
    return n / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--store", type=Path, default=Path("/var/tmp/alprd-bench-web.db"))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--write-s", type=float, default=10.0)
    args = parser.parse_args()
    if args.store.exists():
        have = sqlite3.connect(args.store).execute("SELECT max(rowid) FROM reads").fetchone()[0]
        if have != args.events:
            args.store.unlink()
    if not args.store.exists():
        print(f"making a store of {args.events:,} events at {args.store} ...")
        print(f"made in {make_store(args.store, args.events):.0f} s")
    size = sum(p.stat().st_size for p in args.store.parent.glob(args.store.name + "*"))
    print(f"\nalprd web, {args.events:,} stored events ({size / 1e9:.1f} GB), "
          f"{multiprocessing.cpu_count()} CPUs; search times in ms (median / worst "
          f"of {args.repeat}), 50 events a page\n")  # fmt: skip
    store = EventStore(args.store)
    print(f"{'search':<24} {'median':>8} {'worst':>8} {'found':>6}")
    for name, search in searches(store).items():
        median, worst, found = timed(store, search, args.repeat)
        print(f"{name:<24} {median:8.1f} {worst:8.1f} {found:>6}")
    store.close()
    print("\nevent writes a second (each fsynced, as the daemon writes them):")
    alone = write_rate(args.store, args.write_s)
    print(f"  alone: {alone:.0f}")
    for every_s, what in ((0.1, "10 searches a second"), (0.0, "searches without pause")):
        stop = multiprocessing.Event()
        searcher = multiprocessing.Process(target=_search, args=(str(args.store), every_s, stop))
        searcher.start()
        time.sleep(1.0)
        busy = write_rate(args.store, args.write_s)
        stop.set()
        searcher.join(60)
        print(f"  while another process makes {what}: {busy:.0f} ({busy / alone:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
