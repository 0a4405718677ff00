"""SDPA attention for packed rows: each sample of a row attends to itself alone, through the causal kernel.

transformers sees a packed row (`ttt.data.datamodule.collate(packing=True)`: no attention mask,
positions restarting at each sample) and builds a block-diagonal causal mask for it. With a mask,
torch's CPU flash kernel can neither skip the blocks above the diagonal nor those between samples:
a row of two 1024-token samples costs 2.3x the attention of the two samples apart (fwd+bwd, bf16,
the embedded model's heads). `sdpa_packed` runs the causal kernel on each sample's slice instead,
the same result. Anything that is not such a row (a mask, a batch of several rows, one sample,
decoding with a cache) goes to transformers' own `sdpa` as it would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "sdpa_packed"


def packed_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    starts = _sample_starts(query, key, position_ids)
    if starts is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    bounds = [*starts, query.shape[2]]
    pieces = [
        sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, **kwargs)[0]
        for a, b in zip(bounds, bounds[1:])
    ]
    return torch.cat(pieces, dim=1), None  # (batch, tokens, heads, head_dim), as sdpa returns it


def _sample_starts(query: torch.Tensor, key: torch.Tensor, position_ids: torch.Tensor | None) -> list[int] | None:
    """Where each sample of a packed single row starts, or None when the row is not packed."""
    if position_ids is None or query.shape[0] != 1 or query.shape[2] != key.shape[2] or query.shape[2] < 2:
        return None
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    return starts if len(starts) > 1 and starts[0] == 0 else None


AttentionInterface.register(NAME, packed_sdpa)
AttentionMaskInterface.register(NAME, sdpa_mask)  # masks as for sdpa (a padded batch keeps its mask)


@contextlib.contextmanager
def packed_attention(model: torch.nn.Module) -> Iterator[None]:
    """Within the block (a forward pass: backward needs no attention call), a model on transformers'
    `sdpa` runs `sdpa_packed`; other implementations stay (eager reads the block-diagonal mask,
    flash attention 2 unpacks by itself). The config is restored after, so nothing saved names it."""
    config = model.config
    if getattr(config, "_attn_implementation", None) != "sdpa":
        yield
        return
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
