"""Keep freed memory in the process instead of returning it to the kernel after every tensor.

glibc serves allocations of 128 KiB and more with a fresh ``mmap`` and unmaps them on free. A CNN on the CPU
allocates and frees activations of several MiB per layer per batch, so every forward pass faults in (and the
kernel zeroes) hundreds of thousands of new pages. Measured on the 2-core CI-class VM: a Lite2 forward at 352 px,
batch 8, one thread, spent 0.86 s of 2.80 s in the kernel (570k minor faults); with the thresholds below, 0.02 s
of 1.74 s (15k faults). PyTorch's own CPU tuning guide recommends jemalloc/tcmalloc for the same reason; this gets
most of that with no extra dependency. ``IMGTAG_MALLOC_TUNE=0`` leaves glibc's defaults alone.

The rest of the faults go with transparent huge pages for torch's large tensors (``THP_MEM_ALLOC_ENABLE=1``, which
``import imgtag`` sets unless the environment already says otherwise; torch reads it once, at its first
allocation). Lite2 stem..block 3 at 352 px, batch 32, 2 threads: 6.72 s wall / 3.55 s in the kernel / 2.3 M faults
with glibc's defaults; 3.69 / 0.66 / 0.41 M with these thresholds; 2.81 / 0.00 / 3 faults with both.

The cost is that the process keeps its peak heap until it exits, which suits a command-line run.
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds to ``limit`` bytes (once per process); True if applied."""
    global _done
    if _done or not sys.platform.startswith("linux") or os.environ.get("IMGTAG_MALLOC_TUNE", "1") == "0":
        return _done
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, limit)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, limit))
    except (OSError, AttributeError):  # musl or no glibc: nothing to tune
        ok = False
    _done = ok
    return ok
