"""The process's heap between frames: what the garbage collector walks, and what
the C heap keeps. Called by the service after start-up and after every reload or
swap."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable


def settle() -> None:
    """Everything loaded so far (engines, Ultralytics, torch: hundreds of thousands
    of objects) out of the garbage collector's sight: its full collections then
    walk only what the loop allocates. Measured on the GPU bench: the OCR stage's
    p99 went from ~110 ms (a full collection in the middle of a batch) to ~5 ms.
    Called again after a reload or a swap: what was frozen is thawed first, or what
    those replaced (an engine, a pipeline, a config in a reference cycle) would
    never be collected. Then the C heap gives back the pages those freed (glibc keeps
    freed memory for reuse by default: `release_free`)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    release_free()


def release_free() -> bool:
    """Return the C heap's free pages to the system (glibc's `malloc_trim(0)`, over
    every arena). An engine swapped out or a pipeline replaced frees tens of MB in
    the middle of the heap, which glibc would otherwise keep for good; False where
    the C library has no `malloc_trim` (musl)."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


#: glibc's mallopt parameter: allocations this large or larger are mapped apart
M_MMAP_THRESHOLD = -3

#: the threshold where engines run on the host (`service.heap_mmap_threshold_kb =
#: "auto"`): a decoded frame (2.7 MB at 720p, 0.9 MB at 640 x 480) and the
#: detector's input and output blocks are above it, a plate crop's are far below
HOST_THRESHOLD_KB = 1024


def configure(mmap_threshold_kb: int) -> bool:
    """Blocks of `mmap_threshold_kb` or more (decoded frames: 2.7 MB at 720p) get
    pages of their own, returned to the system when freed. glibc's default moves
    that threshold up to the largest block freed so far, after which every frame
    comes from the heap and a freed frame stays there, behind smaller blocks still
    in use: per camera thread, several frames' worth held for nothing. 0 keeps
    glibc's default; False where there is no `mallopt` (not glibc)."""
    mallopt = _glibc("mallopt") if mmap_threshold_kb > 0 else None
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold_kb * 1024))


def _glibc(name: str) -> Callable[..., int] | None:
    """The C library's function `name`, or None where it has none (musl)."""
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    return function
