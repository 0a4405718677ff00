"""The allocator setting of CPU runs keeps freed memory for reuse; between tasks it goes back."""

import json
import platform
import subprocess
import sys

import pytest

CHILD = """
import json
from ttt import host_memory
assert host_memory.configure("reuse")
blocks = [bytearray(2**20) for _ in range(300)]  # 300 MiB in 1 MiB blocks: heap, not mmap, under reuse
for b in blocks:
    b[::4096] = b"x" * len(b[::4096])  # touch every page
before = host_memory.resident_mib()
del blocks, b
kept = host_memory.resident_mib()
host_memory.release()
print(json.dumps([before, kept, host_memory.resident_mib()]))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_memory_is_kept_for_reuse_and_released_between_tasks():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    before, kept, released = json.loads(out)
    assert kept > before - 50  # reuse: the 300 MiB freed stay with the process
    assert released < kept - 250  # release: they go back to the system
