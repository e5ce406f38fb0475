"""ltf.allocator: the glibc settings apply (in a fresh process, so that this one keeps its own)."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = """
import resource, numpy as np
from ltf import allocator
applied = allocator.keep_freed_memory()
for _ in range(3):  # warm: the heap grows to hold a 64 MB block once
    np.ones(16 * 2**20, np.float32).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # freed and allocated again: from the kept heap, no fresh pages
    np.ones(16 * 2**20, np.float32).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_without_page_faults():
    """20 allocations of 64 MB: glibc's defaults map and unmap each (fresh pages every time;
    how many faults that is depends on transparent huge pages); with the settings they reuse
    the same pages."""
    def faults(setting: bool) -> int:
        code = CHECK if setting else CHECK.replace("allocator.keep_freed_memory()", "False")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert out.returncode == 0, out.stderr
        applied, n = out.stdout.split()
        assert applied == str(setting)
        return int(n)

    tuned, default = faults(True), faults(False)
    assert tuned * 10 < default, (tuned, default)
