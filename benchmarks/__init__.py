"""alprd's benchmarks (`make bench*`). Real data (videos, photos, labelled crops)
is read from `$ALPRD_TEST_DATA`, by default the `shared/data` folder beside the
checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ALPRD_TEST_DATA") or REPO.parent / "shared" / "data").resolve()


def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """`/proc/<pid>/smaps_rollup` as kB per field (Rss, Pss, Anonymous, ...)."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        kb[key] = int(value.split()[0])
    return kb
