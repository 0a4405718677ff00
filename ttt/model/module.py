"""The LightningModule of TTT: LoRA on a causal LM, trained with the prefix (demonstration) loss.

The fine-tuning stage (`ttt.finetune`) trains with the same module: all weights, or a LoRA.

The labels from `ttt.data` already hold the loss mask (IGNORE_INDEX outside the outputs that carry
loss); the model's own causal-LM loss shifts them and averages over the labelled tokens.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from lightning.pytorch import LightningModule
from transformers import get_cosine_schedule_with_warmup


class TTTModule(LightningModule):
    """Trains the trainable (LoRA) parameters of `model`; AdamW and cosine warm-up per fit."""

    def __init__(
        self,
        model: torch.nn.Module,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        gradient_checkpointing: bool = False,
        warmup_from_zero: bool = True,
    ):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.warmup_from_zero = warmup_from_zero
        self.gradient_checkpointing = gradient_checkpointing
        self._step_started = 0.0
        self.tokens_seen = 0
        self.losses: list[torch.Tensor] = []  # every batch's loss, detached (no device sync per step)
        self.epoch_starts: list[int] = []  # index into `losses` where each epoch began
        # frozen base weights (LoRA) are not checkpointed: they come from the base model on resume
        self.strict_loading = all(p.requires_grad for p in model.parameters())

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )

    def on_fit_start(self) -> None:
        self.model.train()  # loaded in eval mode; LoRA dropout (if any) must be active
        if self.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.config.use_cache = False  # no KV cache while training

    def on_fit_end(self) -> None:
        self.model.eval()
        if self.gradient_checkpointing:
            self.model.gradient_checkpointing_disable()
        self.model.config.use_cache = True

    def on_train_epoch_start(self) -> None:
        self.epoch_starts.append(len(self.losses))

    def last_epoch_loss(self) -> float | None:
        """Mean training loss over the last epoch's batches (None before any batch)."""
        last = self.losses[self.epoch_starts[-1] if self.epoch_starts else 0 :]
        return float(torch.stack(last).mean()) if last else None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_started = time.perf_counter()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch).loss
        self.losses.append(loss.detach())
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0])
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        tokens = int(batch["attention_mask"].sum())
        self.tokens_seen += tokens
        seconds = time.perf_counter() - self._step_started
        self.log("train/tokens_per_s", tokens / max(seconds, 1e-9), prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """With frozen base weights (LoRA), checkpoints hold the trainable weights only."""
        if not self.strict_loading:
            trainable = {f"model.{name}" for name, p in self.model.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        total = self.trainer.estimated_stepping_batches
        warmup = math.ceil(self.warmup_fraction * total)
        scheduler = cosine_with_warmup(optimizer, warmup, total, self.warmup_from_zero)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, from_zero: bool = True
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to 0. `from_zero` (transformers' and the paper's schedule)
    runs step 0 at learning rate 0; otherwise warm-up step s runs at (s + 1) / (warmup + 1) of the
    rate, so no step is wasted (with 8 steps and 10% warm-up, 1 in 8 would be)."""
    if from_zero or warmup_steps == 0:
        return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
