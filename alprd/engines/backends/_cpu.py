"""Identity of the CPU, for fingerprints of CPU-specific artefacts; its cores."""

from __future__ import annotations

import os
import platform
from functools import cache

#: ISA features that change what a CPU runtime compiles.
_FLAGS = ("avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "neon")


@cache
def cpu_identity() -> dict[str, str]:
    model, flags = "", set[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "cpu": model or platform.processor() or "unknown",
        "isa": ",".join(f for f in _FLAGS if f in flags),
    }


def cpu_threads() -> int:
    """CPU cores this process may run on (its affinity: a systemd CPUAffinity= or a
    container limit counts, unlike os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
