"""The allocator setting of CPU runs keeps freed memory for reuse; between tasks it goes back; oneDNN's
kernel cache takes its bound from the config."""

import json
import os
import platform
import subprocess
import sys

import pytest

from ttt import host_memory

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


KERNELS = """
import sys, torch
from ttt import host_memory
host_memory.bound_kernel_cache(None if sys.argv[1] == "none" else int(sys.argv[1]))  # before the first matmul
a, w = torch.randn(64, 576, dtype=torch.bfloat16), torch.randn(1536, 576, dtype=torch.bfloat16)
for _ in range(3):
    torch.nn.functional.linear(a, w)  # oneDNN's bf16 matmul: a kernel made once, then found in the cache
"""


def _kernels_made(entries: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != host_memory.KERNEL_CACHE_VARIABLE}
    out = subprocess.run([sys.executable, "-c", KERNELS, entries], capture_output=True, text=True, check=True,
                         env={**env, "ONEDNN_VERBOSE": "profile_create"}).stdout  # fmt: skip
    return out.count("create:cache_miss")


def test_the_kernel_cache_bound_reaches_onednn_when_set_before_the_first_matmul():
    made = _kernels_made("none")
    if made == 0:
        pytest.skip("oneDNN does not run this bf16 matmul on this CPU")
    assert made == 1  # oneDNN's default cache: made once, reused twice
    assert _kernels_made("0") == 3  # trainer.kernel_cache=0: nothing kept, made each time


def test_the_environment_s_kernel_cache_wins_over_the_config(monkeypatch):
    monkeypatch.setenv(host_memory.KERNEL_CACHE_VARIABLE, "64")
    assert host_memory.bound_kernel_cache(128) == "64"
    monkeypatch.delenv(host_memory.KERNEL_CACHE_VARIABLE)
    assert host_memory.bound_kernel_cache(None) is None
    assert host_memory.bound_kernel_cache(128) == "128"
