"""Memory allocator settings for a process that checks one treatment and ends.

A check allocates and frees many large temporary arrays (dose, gradient and weights of up to
a million sample points, a few MB to ~25 MB each). With glibc's defaults each array above the
dynamic mmap threshold is a fresh ``mmap`` whose pages the kernel faults in and zeroes on first
touch, and freed heap memory is given back to the system and faulted in again by the next
array. :func:`keep_freed_memory` makes glibc serve arrays up to ``MMAP_THRESHOLD_MB`` from its
heap and keep up to ``TRIM_THRESHOLD_MB`` of freed memory for reuse.

Measured on the sample (``plancheck check sample_dicom``, 2 cores, same run): minor page faults
≈ 145 000 → ≈ 80 000, system time 0.5–0.8 s → 0.3–0.4 s, rules phase 1.5–1.7 s → 1.2–1.4 s;
peak resident memory about 30 MB higher. The numbers a check computes do not change.

Used by the one-shot commands (``check``, ``dvh``) and the worker processes of ``batch``, the
receiver and the watched folder (each ends after its treatment). Not used by the long-running
parents. Does nothing outside glibc, or when the user set glibc's own ``MALLOC_*_`` variables.
"""

from __future__ import annotations

import logging
import os

__all__ = ["MMAP_THRESHOLD_MB", "TRIM_THRESHOLD_MB", "keep_freed_memory"]

log = logging.getLogger(__name__)

MMAP_THRESHOLD_MB = 32
"""Blocks up to this size (MB) come from the heap (glibc's maximum for this setting on 64-bit)."""

TRIM_THRESHOLD_MB = 512
"""Freed memory kept for reuse before glibc returns it to the system, MB."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_done = False


def keep_freed_memory() -> bool:
    """Apply the settings above to this process (once; inherited by processes forked from it).
    True when applied, False on other C libraries or when the user set glibc's variables."""
    global _done
    if _done:
        return True
    if any(name in os.environ for name in _USER_VARIABLES):
        return False
    try:
        libc_version = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return False
    if not libc_version or not libc_version.startswith("glibc"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MB << 20) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_MB << 20) == 1)
    except (OSError, AttributeError):
        return False
    log.debug("allocator: mmap threshold %d MB, trim threshold %d MB (%s)", MMAP_THRESHOLD_MB, TRIM_THRESHOLD_MB,
              "applied" if ok else "refused")
    _done = ok
    return ok
