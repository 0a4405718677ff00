"""Padding token-id rows into one batch tensor: on the right for training and scoring, on the left
for generation (so every prompt ends where decoding starts)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad(rows: Sequence[Sequence[int]], value: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows as a (batch, longest) long tensor filled out with `value`, attention mask: 1 on real tokens)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask
