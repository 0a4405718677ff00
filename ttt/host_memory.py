"""How this process's C allocator returns freed memory to the operating system (`trainer.host_memory`),
and how much resident memory the process holds (sampled per task in `predictions.json`).

glibc's malloc serves a large block (128 KiB at first, its threshold rising as such blocks are
freed) from a fresh `mmap` and unmaps it when freed, and it trims the heap's free top back to the
system past a threshold too. A training step on a CPU frees and reallocates hundreds of
activation tensors of 0.1-30 MB; each new mapping is zero-filled by the kernel page by page, so
elementwise ops on fresh tensors run several times slower than on reused memory (a 1280 x 1536
multiply: 1.8 ms against 0.5 ms) and the time shows as system time.

- `reuse`: blocks below 32 MiB (glibc's largest threshold) come from the heap, and up to 1 GiB of
  free heap is kept for the next allocation before any is trimmed: memory is reused, at the price of
  at most that much more resident memory. Larger blocks are still mapped and unmapped.
- `system`: glibc's defaults.

Between tasks (`release`), `reuse` hands the free heap back to the system (`malloc_trim`), so the
memory a task kept for reuse does not pile up over a long run and `resident_mib` after a task is
what the process holds, not what it last freed.

Only glibc (Linux) has these settings; elsewhere `reuse` does nothing and says so once.

oneDNN, which runs PyTorch's CPU matmuls, keeps each kernel it compiled (one per shape and
layout, about 0.6 MB) in a cache of 1024 entries by default, so a run's memory grows by the kernels
of each new task's shapes for hundreds of tasks. `bound_kernel_cache` (`trainer.kernel_cache`) caps
it; oneDNN reads the cap once, at the process's first kernel (experiments/inference_bounds.md, section 7).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import resource

log = logging.getLogger(__name__)

MODES = ("reuse", "system")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: HEAP_MAX_SIZE / 2 on 64-bit
TRIM_THRESHOLD = 2**30
KERNEL_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"  # oneDNN's name for its cache's capacity (entries)
_configured = {"reuse": False}  # the allocator's settings are the process's, like this record of them


def configure(mode: str) -> bool:
    """Apply `mode` to this process's allocator; whether glibc took the settings (False for `system`)."""
    if mode not in MODES:
        raise ValueError(f"trainer.host_memory={mode!r}: choose one of {MODES}")
    if mode == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.info("trainer.host_memory=reuse: not glibc (%s), left as it is", platform.platform())
        return False
    libc = ctypes.CDLL("libc.so.6")
    _configured["reuse"] = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _configured["reuse"]


def bound_kernel_cache(entries: int | None) -> str | None:
    """Cap oneDNN's kernel cache at `entries` (None: oneDNN's default) unless this process's
    environment already sets it, which wins; returns the capacity in force (None: the default).
    Takes effect only before the process's first CPU matmul, when oneDNN reads it."""
    if entries is not None and KERNEL_CACHE_VARIABLE not in os.environ:
        os.environ[KERNEL_CACHE_VARIABLE] = str(entries)
    elif entries is not None and os.environ[KERNEL_CACHE_VARIABLE] != str(entries):
        log.info("trainer.kernel_cache=%d: the environment's %s=%s kept", entries, KERNEL_CACHE_VARIABLE, os.environ[KERNEL_CACHE_VARIABLE])
    return os.environ.get(KERNEL_CACHE_VARIABLE)


def release() -> None:
    """Between tasks: give the heap's free memory back to the system (glibc's `malloc_trim`) where
    `configure("reuse")` took effect, which otherwise keeps up to 1 GiB of it; else nothing."""
    if _configured["reuse"]:
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def resident_mib() -> float | None:
    """This process's resident memory now (Linux's /proc/self/statm), MiB; None where there is none."""
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def peak_resident_mib() -> float:
    """This process's peak resident memory over its life so far, MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
