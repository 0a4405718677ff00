"""The per-task LoRA adapter: built once on the base model, reset to its initial values per task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model

# Attention and MLP projections of Llama-family models (the paper adapts both).
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters (paper: rank 128, alpha 16, dropout 0, attention + MLP)."""

    rank: int = 128
    alpha: int = 16
    dropout: float = 0.0
    target_modules: Sequence[str] = field(default=LLAMA_PROJECTIONS)

    @classmethod
    def from_config(cls, lora: Any) -> LoraSettings:
        """From a `lora:` config node (`ttt.lora`, `finetune.lora`)."""
        return cls(lora.rank, lora.alpha, lora.dropout, tuple(lora.target_modules))


def add_lora(base: torch.nn.Module, settings: LoraSettings, seed: int = 0) -> PeftModel:
    """Wrap `base` with a fresh LoRA adapter whose initial values depend only on `seed`."""
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng():  # leave the caller's random state as it was
        torch.manual_seed(seed)
        return get_peft_model(base, config)


def lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the trainable (LoRA) parameters."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_lora_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` (from `lora_state`) back into the trainable parameters, bit for bit."""
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].copy_(value)
