"""Keep freed memory for reuse instead of handing it back to the kernel (glibc).

An upload allocates and frees several megabyte-sized buffers per file (socket
reads, the joined part, the object write). glibc returns such blocks to the
kernel at once (munmap, or trimming the heap top), so the next request's
buffers fault in fresh pages that the kernel must zero first: perf showed
page clearing as a fifth of the upload function's CPU. Raising the mmap and
trim thresholds keeps that memory mapped and reused.
"""

from __future__ import annotations

import ctypes
import functools
import platform

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit).
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


@functools.cache
def _libc():
    if platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)  # the process's own symbols: the libc already loaded, no library search


def retain_freed_memory(retain_bytes: int) -> bool:
    """Serve blocks up to 32 MiB from the heap and keep up to `retain_bytes` of freed
    memory there. False (and nothing changed) when `retain_bytes` is 0 or the C
    library is not glibc."""
    libc = _libc()
    if retain_bytes <= 0 or libc is None:
        return False
    threshold = min(retain_bytes, MAX_MMAP_THRESHOLD)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, retain_bytes))
