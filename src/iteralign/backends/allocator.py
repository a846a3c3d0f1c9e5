"""Keep freed memory in the process: a CPU forward pass should not page-fault its activations in.

Why: a transformer layer on CPU allocates and frees tens of megabytes of activations per layer.
glibc's malloc hands such blocks back to the kernel when they are freed (blocks above its mmap
threshold are unmapped, and a heap whose free top exceeds the trim threshold is trimmed), so the
next layer's allocation faults every page in again, zero-filled by the kernel. Measured on a
2-core AMD EPYC, SmolLM2-135M in float32, decoder forward on 8 x 512 tokens: 416 tokens/s with
1.24 million page faults per 3 passes (3.8 s of system time), 575 tokens/s with none after the two
settings below (docs/benchmarks.md, "The allocator").

What: raise the mmap threshold to glibc's maximum (32 MiB, so activation-sized blocks come from
the heap and are reused) and the trim threshold to 1 GiB (freed heap stays with the process, up
to that much above what is in use). Peak memory moves little (the full evaluation: 1.78-1.89 GB
tuned, 1.75 GB untuned): the process keeps what its largest pass needed instead of returning it
between layers. Blocks above 32 MiB are still mapped and unmapped each time; the packed
scorer's largest (4,096 tokens x 1,536 floats, 25 MB) are below that. It is process-wide and
applies to allocations made after it, so the backend calls it before loading a model. Only glibc
(Linux) has mallopt; elsewhere, or with ITERALIGN_MALLOC_TUNING=0, nothing is changed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc once per process; True when the settings are in force."""
    if os.environ.get("ITERALIGN_MALLOC_TUNING", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError as exc:  # no loadable libc: run with its defaults
        log.debug("malloc tuning unavailable: %s", exc)
        return False
    # mallopt returns 1 on success, 0 on an out-of-range value
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
