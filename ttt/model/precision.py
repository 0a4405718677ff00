"""Which floating-point types a run computes in: the names `model.dtype` and `inference.dtype`
take, and what `auto` means on this machine (`model.dtype=auto`, `trainer.precision=auto`)."""

from __future__ import annotations

import torch

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
AUTO = "auto"  # model.dtype / trainer.precision: bf16 where the CPU (or a GPU) computes it fast, else fp32


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX), with which bf16 trains and
    encodes faster than fp32 (experiments/results/cpu_precision.md); without them bf16 is slower."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own checks
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def auto_precision(device: str) -> tuple[str, str]:
    """(model.dtype, trainer.precision) that `auto` means here: bf16 frozen weights with bf16
    autocast on a GPU or a CPU with bf16 instructions; fp32 otherwise."""
    if device != "cpu" or cpu_has_bf16():
        return "bf16", "bf16-mixed"
    return "fp32", "32-true"
