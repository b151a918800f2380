"""`make bench-memory`: where the daemon's memory goes, step by step in one process.

RSS and its anonymous part (`/proc/self/smaps_rollup`) after each step of what
`alprd run` does, with the default config and models: the imports; each role's
engine loaded, then run once (its working buffers); frames of several sizes
through the whole pipeline (what each new input shape costs); an engine swapped
for a copy of itself, without and then with the C heap's free pages given back
(`alprd.heap.release_free`); and the Python objects alive at the end by
the file that allocated them (tracemalloc, started after the imports).

Per camera, the daemon adds what `make soak CAMERAS=1` and `CAMERAS=4` differ by
(decode buffers, a reader thread, tracker and voter state).
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc

from rich.console import Console
from rich.table import Table

from benchmarks import DATA, smaps_rollup


def rollup() -> tuple[float, float]:
    """RSS and its anonymous part, in MB."""
    kb = smaps_rollup()
    return kb["Rss"] / 1024, kb["Anonymous"] / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config")
    parser.add_argument("--top", type=int, default=8, help="tracemalloc rows (default 8)")
    args = parser.parse_args()
    table = Table(title="alprd memory, step by step (one process)")
    for col in ("step", "RSS MB", "anon MB", "step adds MB"):
        table.add_column(col, justify="right" if col != "step" else "left")
    last = [0.0]

    def mark(step: str) -> None:
        gc.collect()
        rss, anon = rollup()
        table.add_row(step, f"{rss:.1f}", f"{anon:.1f}", f"{rss - last[0]:+.1f}")
        last[0] = rss

    mark("interpreter")
    import cv2
    import numpy as np

    from alprd import config as cfgmod
    from alprd import heap
    from alprd import log as logmod
    from alprd.engines.serving import load_engine, roles_of
    from alprd.pipeline.recognizer import Recognizer
    from alprd.pipeline.source import read_image

    logmod.configure("console", "warning")
    mark("imports (alprd, numpy, OpenCV, the engine runtime)")
    tracemalloc.start()
    config = cfgmod.load(cfgmod.find_config(args.config).path)
    engines = {}
    for role in roles_of(config):
        engines[role] = load_engine(config, role)
        mark(f"{role} engine loaded ({engines[role].backend}, {engines[role].precision})")
    recognizer = Recognizer(config, engines)
    photos = sorted((DATA / "plates-br").glob("*.jpg"))[:4]
    frames = [read_image(p) for p in photos] or [np.zeros((720, 1280, 3), np.uint8)]
    recognizer(frames[0])
    mark("one frame through the pipeline (engines' working buffers)")
    for size in ((480, 640), (720, 1280), (1080, 1920), (1440, 2560)):
        for frame in frames:
            recognizer(cv2.resize(frame, size[::-1]))
        mark(f"frames of {size[1]}x{size[0]}")
    for _ in range(3):  # a swap: the plate engine replaced by a fresh copy of itself
        old = recognizer.swap(load_engine(config, "plate"))
        recognizer(frames[0])
        if old is not None:
            old.engine.close()
        del old
        gc.collect()
    mark("3 plate engine swaps, freed memory kept by the C heap")
    trimmed = heap.release_free()
    mark("... and given back" if trimmed else "... (no malloc_trim here)")
    snapshot = tracemalloc.take_snapshot()
    console = Console(width=140)
    console.print(table)
    console.print("Python objects alive at the end, by allocating file (tracemalloc):")
    for stat in snapshot.statistics("filename")[: args.top]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("/alprd/")[-1]
        console.print(f"  {stat.size / 2**20:7.2f} MB  {stat.count:7d} blocks  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
