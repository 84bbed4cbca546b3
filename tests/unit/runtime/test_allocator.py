"""retain_freed_memory: freed megabyte buffers are reused, not faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aperture.runtime.allocator import retain_freed_memory

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"

# In a fresh interpreter: page faults of allocating, touching and freeing
# buffers of the sizes an upload handles, interleaved as requests are.
_PROBE = textwrap.dedent("""
    import resource, sys
    from aperture.runtime.allocator import retain_freed_memory
    retained = retain_freed_memory(int(sys.argv[1]))
    def churn():
        for _ in range(20):
            held = [bytearray(size) for size in (3 << 20, 1 << 20, 256 << 10, 20 << 20)]
            for block in held:
                block[::4096] = b"\\x01" * len(range(0, len(block), 4096))
            del held
    churn()  # the first round maps the memory either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    churn()
    print(retained, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(retain_bytes: int) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(retain_bytes)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(FUNCTIONS)},
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_retained_memory_is_reused_without_page_faults():
    retained, faults = _faults(256 << 20)
    default, default_faults = _faults(0)

    assert (retained, default) == ("True", "False")
    # 20 rounds of ~24 MiB touched: 120,000 faults if every buffer were fresh memory
    assert faults < 500 < default_faults


def test_nothing_is_changed_when_asked_to_retain_nothing():
    assert retain_freed_memory(0) is False
