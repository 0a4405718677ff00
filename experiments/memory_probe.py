"""Where a run's resident memory goes, task by task: after each task (where the predictor calls
`host_memory.release`) print resident MiB, Python objects, live CPU tensors and their MiB, and the
object types that grew. Runs train.py in this process with the given overrides:

    python experiments/memory_probe.py data=arc_agi_1_dev ttt.epochs=1 hydra.run.dir=/tmp/probe
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 python experiments/memory_probe.py ...   # without oneDNN's kernel cache
    PROBE_MMAP_MIB=4 python experiments/memory_probe.py ...   # trainer.host_memory=reuse's mmap threshold (32)
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python experiments/memory_probe.py ...   # another allocator
    LD_PRELOAD=...libjemalloc.so.2 MALLOC_CONF=prof:true,lg_prof_sample:17,prof_prefix:/tmp/heap/jeprof \\
        python experiments/memory_probe.py ...   # also a heap profile after each task: what grew, by call stack:
    jeprof --text --base=/tmp/heap/<first>.heap $(which python) /tmp/heap/<last>.heap
"""
import collections, gc, os, sys
import torch
from torch._subclasses.fake_tensor import FakeTensor
from ttt import host_memory
if "PROBE_MMAP_MIB" in os.environ:
    host_memory.MMAP_THRESHOLD = int(float(os.environ["PROBE_MMAP_MIB"]) * 2**20)
release = host_memory.release
last = {}
def probe():
    release()
    if "prof:true" in os.environ.get("MALLOC_CONF", ""):
        import ctypes
        ctypes.CDLL("libjemalloc.so.2").mallctl(b"prof.dump", None, None, None, 0)
    gc.collect()
    objs = gc.get_objects()
    counts = collections.Counter(type(o).__name__ for o in objs)
    tensors = [o for o in objs if isinstance(o, torch.Tensor)]
    real = [t for t in tensors if t.device.type == "cpu" and not isinstance(t, FakeTensor)]  # compile's fake tensors hold no memory
    mib = sum(t.numel() * t.element_size() for t in real) / 2**20
    grown = {k: v - last.get(k, 0) for k, v in counts.items() if v - last.get(k, 0) > 200}
    last.update(counts)
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith("Rss"))
    kinds = {k: round(int(v.split()[0]) / 1024) for k, v in status.items()}  # RssAnon (heap, tensors), RssFile (mapped code, files)
    maps = anon_maps()
    print("PROBE rss", host_memory.resident_mib(), "by kind MiB", kinds, "objects", len(objs), "tensors", len(tensors), "tensor MiB", round(mib), "grown", sorted(grown.items(), key=lambda kv: -kv[1])[:10],
          "heap MiB", maps["heap"], "anon maps", maps["count"], "their MiB", maps["anon"], "largest", maps["largest"], flush=True)


def anon_maps():
    """Resident MiB of the [heap] (glibc's main arena) and of anonymous mappings (other arenas,
    mmapped blocks, JIT code), from /proc/self/smaps."""
    heap, anon, count, sizes, name = 0, 0, 0, [], None
    for line in open("/proc/self/smaps"):
        head = line.split()
        if "-" in head[0] and len(head) >= 5:  # a mapping's header: its path, if any, is field 6
            name = head[5] if len(head) > 5 else ""
        elif head[0] == "Rss:":
            kib = int(head[1])
            if name == "[heap]":
                heap += kib
            elif name == "":
                anon, count = anon + kib, count + 1
                sizes.append(kib)
    return {"heap": round(heap / 1024), "anon": round(anon / 1024), "count": count,
            "largest": [round(k / 1024) for k in sorted(sizes)[-5:]]}
host_memory.release = probe
sys.argv = ["train.py", *sys.argv[1:]]
import runpy
runpy.run_path("train.py", run_name="__main__")
