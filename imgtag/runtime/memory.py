"""Keep freed memory in the process instead of returning it to the kernel after every tensor.

glibc serves allocations of 128 KiB and more with a fresh ``mmap`` and unmaps them on free. A CNN on the CPU
allocates and frees activations of several MiB per layer per batch, so every forward pass faults in (and the
kernel zeroes) hundreds of thousands of new pages. Measured on the 2-core CI-class VM: a Lite2 forward at 352 px,
batch 8, one thread, spent 0.86 s of 2.80 s in the kernel (570k minor faults); with the thresholds below, 0.02 s
of 1.74 s (15k faults). PyTorch's own CPU tuning guide recommends jemalloc/tcmalloc for the same reason; this gets
most of that with no extra dependency. ``IMGTAG_MALLOC_TUNE=0`` leaves glibc's defaults alone.

Transparent huge pages for torch's large tensors (``THP_MEM_ALLOC_ENABLE=1`` in the environment, read by torch at
its first allocation) remove most of the remaining faults, but imgtag leaves them off: on this VM they helped on a
quiet machine and cost kernel time (compaction) on a busy one. Measured (benchmarks/bench_memory.py, RESULTS.md):
Lite2 at 352 px, batch 32, 2 threads, two runs on a busy box — defaults 9.03 / 8.79 s, these thresholds 5.78 /
6.60 s, thresholds + THP 8.66 / 6.14 s.

Memory: the process keeps its peak heap. Training MlTr-S (batch 4, 224 px) plateaued at 3.28 GB max RSS against
2.96 GB with glibc's defaults.
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
