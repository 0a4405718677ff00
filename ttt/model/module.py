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
    ):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.gradient_checkpointing = gradient_checkpointing
        self._step_started = 0.0
        self.tokens_seen = 0
        self.losses: list[torch.Tensor] = []  # every batch's loss, detached (no device sync per step)
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
        scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(self.warmup_fraction * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
