"""glibc malloc settings for a training process: freed memory stays in the process for reuse.

XLA's CPU runtime allocates and frees its temporary buffers (tens of MB) at every step. With
glibc's defaults those come from per-thread arenas or from mmap, and go back to the OS when freed,
so every step touches fresh pages: one training step of the char LM of `scripts/bench.py` at
B = 32, T = 128, H = 256 took ~20,000 page faults and ~40 ms of kernel time (126 ms per step).
One arena that neither maps nor trims brings that to ~0 faults and 108 ms per step. The cost:
the process keeps its peak heap until it exits (as GPU caching allocators do), and large blocks
of changing sizes fragment it: with remat at B = 8, T = 16,384, H = 256 the peak RSS was 3.5 GB
instead of 2.0 GB, so `scripts/train.py` leaves glibc's defaults for remat runs.

    from ltf import allocator
    allocator.keep_freed_memory()   # first thing in a script, before any JAX computation

Settings made later still apply to new allocations, but threads that already hold their own
arena keep it; JAX starts its threads at the first computation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt(3) parameters (glibc malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
NEVER_TRIM = 2**31 - 1  # bytes of free heap top before glibc returns memory: the largest int


def keep_freed_memory() -> bool:
    """One malloc arena, no mmap for large blocks, no trimming. Returns whether it was applied:
    False where the C library is not glibc (macOS, musl), which keep their own behaviour."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM))
    return all(libc.mallopt(param, value) == 1 for param, value in settings)
