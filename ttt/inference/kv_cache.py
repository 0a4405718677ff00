"""Prompts encoded once per task, and the KV-cache surgery that lets every answer reuse them.

`PromptCache` runs the backbone over each distinct prompt once (several prompts in one
left-padded batch) and keeps its KV cache and last hidden state: decoding starts every branch
from it and product-of-experts scoring teacher-forces each candidate from it, so a view's
demonstrations are never encoded twice. Call `forget()` between tasks (the caches belong to one
model state).

Caches are transformers' `DynamicCache` (one key and one value tensor per layer, shaped
`batch x kv heads x positions x head dim`); the helpers here are the only code that reads them:
`stack` left-pads several prompts' caches into one batch, `repeat` copies one prompt's cache for a
batch of candidates, and `DynamicCache.reorder_cache` (transformers' beam-search helper) keeps,
copies or drops rows as branches split and end.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from ttt.data.padding import pad
from ttt.model.lora import causal_lm


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt's KV cache (batch of 1) and the final hidden state of its last token."""

    cache: DynamicCache
    last_hidden: torch.Tensor  # (hidden,)
    length: int


class PromptCache:
    """The backbone of a causal LM, and the encoded prompts of the current task."""

    def __init__(self, model: Any):
        self.backbone = causal_lm(model).get_decoder()
        parameters = inspect.signature(self.backbone.forward).parameters
        self._cache_kw = "cache" if "cache" in parameters else "past_key_values"  # renamed in transformers 5
        self.device = next(self.backbone.parameters()).device
        self._store: dict[tuple[int, ...], EncodedPrompt] = {}

    def __call__(self, prompt: Sequence[int]) -> EncodedPrompt:
        """The prompt encoded (once: later calls return the kept cache)."""
        return self.encode([prompt])[0]

    def encode(self, prompts: Sequence[Sequence[int]], batch_size: int = 8) -> list[EncodedPrompt]:
        """The prompts encoded, those not yet kept in left-padded batches of `batch_size` (one
        forward pass each, then split into one cache per prompt without its padding)."""
        new = list(dict.fromkeys(tuple(p) for p in prompts if tuple(p) not in self._store))
        for start in range(0, len(new), batch_size):
            batch = new[start : start + batch_size]
            ids, mask = (t.to(self.device) for t in pad(batch, 0, left=True))
            width = ids.shape[1]
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            hidden, cache = self.forward(ids, DynamicCache(), mask, positions)
            for row, prompt in enumerate(batch):
                first = width - len(prompt)  # the first position after the left padding
                layers = [(layer.keys[row : row + 1, :, first:].clone(), layer.values[row : row + 1, :, first:].clone())
                          for layer in cache.layers]  # fmt: skip
                self._store[prompt] = EncodedPrompt(DynamicCache(ddp_cache_data=layers), hidden[row, -1], len(prompt))
        return [self._store[tuple(p)] for p in prompts]

    def forward(
        self, ids: torch.Tensor, cache: DynamicCache, mask: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, DynamicCache]:
        """Final hidden states of `ids` (batch x new tokens) after `cache`, which grows by them.

        `mask` covers the cached and the new positions (0: left padding); `positions` are the new
        tokens' position ids (a padded prompt's answer continues from its own length).
        """
        out = self.backbone(
            input_ids=ids, attention_mask=mask.to(self.device), position_ids=positions.to(self.device),
            use_cache=True, **{self._cache_kw: cache},
        )  # fmt: skip
        return out.last_hidden_state, cache

    def forget(self) -> None:
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store)


def stack(encoded: Sequence[EncodedPrompt]) -> tuple[DynamicCache, torch.Tensor]:
    """One batched cache of several prompts, left-padded to the longest, and its attention mask."""
    width = max(e.length for e in encoded)
    layers = []
    for index in range(len(encoded[0].cache.layers)):
        keys, values = [], []
        for e in encoded:
            layer = e.cache.layers[index]
            pad = (0, 0, width - e.length, 0)  # zeros before the prompt's positions
            keys.append(torch.nn.functional.pad(layer.keys, pad))
            values.append(torch.nn.functional.pad(layer.values, pad))
        layers.append((torch.cat(keys), torch.cat(values)))
    device = encoded[0].last_hidden.device
    mask = torch.tensor([[0] * (width - e.length) + [1] * e.length for e in encoded], device=device)
    return DynamicCache(ddp_cache_data=layers), mask


def repeat(encoded: EncodedPrompt, count: int) -> DynamicCache:
    """A new cache holding `count` copies of one prompt's cache (the original is left as it was)."""
    layers = [(layer.keys.expand(count, -1, -1, -1).clone(), layer.values.expand(count, -1, -1, -1).clone())
              for layer in encoded.cache.layers]  # fmt: skip
    return DynamicCache(ddp_cache_data=layers)
