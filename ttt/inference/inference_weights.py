"""The weights inference decodes with: the LoRA update merged in, optionally in another dtype.

A LoRA model computes `x W + s x A B` in every adapted projection: seven extra small matmuls per
layer per decoding step. Merging (`W + s A B`) removes them; decoding is then a plain model's.
Adaptation must go on from the exact unmerged weights (the next task resets the LoRA weights and
trains from the same base), and unmerging by subtraction is not exact in floating point, so:

- same dtype: the adapted layers' base weights are copied aside, the adapter merged in place
  (PEFT's `merge_adapter`), and on exit unmerged and the copies written back, bit for bit;
- another dtype (`inference.dtype=bf16` on a CPU with bf16 matmuls, say): a merged copy of the
  model in that dtype is decoded with and dropped on exit; the model itself is never touched.

A model without LoRA layers is used as it is (cast to a copy if asked). A 4-bit (QLoRA) base is
never merged: merging into quantised weights is lossy, so the settings refuse it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ttt.model.precision import DTYPES

INFERENCE_DTYPES = tuple(DTYPES)  # inference.dtype (None: the model's own)


def _lora_layers(model: Any) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


@contextmanager
def inference_weights(model: Any, merge: bool = True, dtype: str | None = None) -> Iterator[Any]:
    """Yield the model to decode with (see the module docstring); `model` is as before on exit."""
    layers = _lora_layers(model) if merge else []
    weight = next(model.parameters())
    if dtype is not None and DTYPES[dtype] != weight.dtype:
        fast = copy.deepcopy(model)
        if layers:
            fast = fast.merge_and_unload()
        yield fast.to(DTYPES[dtype]).eval()
        del fast
        return
    if not layers:
        yield model
        return
    originals = [layer.get_base_layer().weight.detach().clone() for layer in layers]
    model.merge_adapter()
    try:
        yield model
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for layer, original in zip(layers, originals):
                layer.get_base_layer().weight.copy_(original)
