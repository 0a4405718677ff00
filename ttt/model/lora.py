"""The per-task LoRA adapter: built once on the base model, reset to its initial values per task,
saved atomically."""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, load_peft_weights, set_peft_model_state_dict

from ttt.knobs import knob

# Attention and MLP projections of Llama-family models (the paper adapts both).
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters (paper: rank 128, alpha 16, dropout 0, attention + MLP).

    The update B A is scaled by alpha / rank (paper: 16 / 128 = 1/8), or by alpha / sqrt(rank)
    with `rslora` (rank-stabilised LoRA, PEFT's `use_rslora`).
    """

    rank: int = knob(128, ge=1)
    alpha: float = knob(16.0, gt=0)
    dropout: float = knob(0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = LLAMA_PROJECTIONS
    rslora: bool = False

    def problems(self) -> list[str]:
        return [] if self.target_modules else ["target_modules=[]: name at least one module to adapt"]

    @property
    def scaling(self) -> float:
        """The factor on B A."""
        return self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)


def add_lora(base: torch.nn.Module, settings: LoraSettings, seed: int = 0) -> PeftModel:
    """Wrap `base` with a fresh LoRA adapter whose initial values depend only on `seed`."""
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        use_rslora=settings.rslora,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(), peft_quietly():  # leave the caller's random state as it was
        torch.manual_seed(seed)
        return get_peft_model(base, config)


# What PEFT says on wrapping a model that does not apply to this project's adapters (`peft_quietly`).
PEFT_NOTICES = (
    # A LoRA on a tied embedding: only the shipped fine-tuning adapters have one (the full fine-tune's
    # difference, ttt.model.delta_lora), and they are merged as soon as they load, into the one
    # tensor both uses share; TTT's adapters never target the embedding (LLAMA_PROJECTIONS).
    r"Model has `tie_word_embeddings=True` and a tied layer is part of the adapter",
    r"Model with `tie_word_embeddings=True` and the tied_target_modules=",
    # PEFT asking transformers' deprecated name for a model's checkpointing state (PEFT's own call)
    r"`is_gradient_checkpointing` is deprecated",
)


@contextmanager
def peft_quietly() -> Iterator[None]:
    """Wrap or load with PEFT without its notices that do not apply here (`PEFT_NOTICES`): each is
    matched by its text, so any other warning still shows."""
    with warnings.catch_warnings():
        for notice in PEFT_NOTICES:
            warnings.filterwarnings("ignore", message=notice)
        yield


def causal_lm(model: Any) -> Any:
    """The transformers causal LM inside a PEFT model (LoRA layers stay in place), or the model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the trainable (LoRA) parameters."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_lora_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` (from `lora_state`) back into the trainable parameters, bit for bit."""
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].copy_(value)


class Adapter:
    """A PEFT model and the initial values its LoRA weights are reset to before every task."""

    def __init__(self, model: Any):
        self.model = model
        self.initial = lora_state(model)

    def reset(self) -> None:
        load_lora_state(self.model, self.initial)

    def load(self, directory: Path) -> None:
        """The LoRA weights saved in `directory` (by `save`) into the model."""
        set_peft_model_state_dict(self.model, load_peft_weights(str(directory)))

    def save(self, directory: Path) -> None:
        """The adapter's files (PEFT format) into `directory`, each replaced atomically: they are
        written to a temporary folder beside it first, so a kill never leaves half a file."""
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".adapter.") as tmp:
            self.model.save_pretrained(tmp)
            for path in Path(tmp).iterdir():
                os.replace(path, directory / path.name)


@torch.no_grad()
def relative_update_norm(model: torch.nn.Module) -> float | None:
    """Mean over LoRA layers of ||scaling * B A|| / ||W||: how far adaptation moved the weights
    (0 at the reset; None without LoRA layers). The Frobenius norm of B A is computed from the
    r x r Gram matrices, never forming the full update."""
    ratios = []
    for module in model.modules():
        if not hasattr(module, "lora_A") or not hasattr(module, "base_layer"):
            continue
        if not module.base_layer.weight.is_floating_point():  # quantized (QLoRA): no plain norm
            continue
        for name, a_layer in module.lora_A.items():
            a = a_layer.weight.float()
            b = module.lora_B[name].weight.float()
            # ||B A||_F^2 = trace(B^T B A A^T)
            update = torch.sqrt(torch.clamp(((b.T @ b) * (a @ a.T)).sum(), min=0.0))
            ratios.append(float(module.scaling[name] * update / module.base_layer.weight.float().norm()))
    return sum(ratios) / len(ratios) if ratios else None
