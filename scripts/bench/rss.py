"""Resident-memory readings inside a measured child process (memory.py, limits.py).

Standard library only, so that importing it moves no baseline.
"""

from __future__ import annotations

import gc
from pathlib import Path


def status_kib(field: str) -> int:
    """A /proc/self/status field in KiB (VmRSS, VmHWM, VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def trim() -> None:
    """Give freed memory back (garbage, then glibc's free lists), so the next reading is what is held."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak() -> None:
    """Peak RSS := current RSS (Linux >= 4.0), so what came before does not count."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
