"""The LightningModule of TTT: LoRA on a causal LM, trained with the prefix (demonstration) loss.

The fine-tuning stage (`ttt.finetune`) trains with the same module: all weights, or a LoRA.

The labels from `ttt.data` already hold the loss mask (IGNORE_INDEX outside the outputs that carry
loss); `ttt.model.prefix_loss` shifts them and averages the cross-entropy over the labelled tokens,
running the LM head only at those positions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningModule
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import get_cosine_schedule_with_warmup

from ttt.data.datamodule import num_tokens
from ttt.model.prefix_loss import PrefixLoss


FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what the fused AdamW kernel takes


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
        loss: PrefixLoss | None = None,
        time_gone: Callable[[], float] | None = None,
    ):
        """`time_gone` (run.deadline): the fraction of the fit's time gone (it is stopped at 1), so
        the schedule runs by time as well as by steps, whichever is further along, and ends at its
        low rate either way."""
        super().__init__()
        self.model = model
        self.loss = loss or PrefixLoss()
        self._lora_layers: list[BaseTunerLayer] | None = None  # found on the first autocast forward
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.warmup_from_zero, self.time_gone = warmup_from_zero, time_gone
        self.gradient_checkpointing = gradient_checkpointing
        self._step_started = 0.0
        self.tokens_seen = 0
        self.losses: list[torch.Tensor] = []  # every batch's loss, detached (no device sync per step)
        self.epoch_starts: list[int] = []  # index into `losses` where each epoch began
        # frozen base weights (LoRA) are not checkpointed: they come from the base model on resume
        self.strict_loading = all(p.requires_grad for p in model.parameters())

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's prefix loss. Under autocast, PEFT's cast of every LoRA input to the adapter's
        fp32 weights is skipped: autocast would cast it straight back to bf16 for the matmul (two
        copies of each input per LoRA layer, and the fp32 one kept for backward; bit-identical results)."""
        if not torch.is_autocast_enabled(batch["input_ids"].device.type):
            return self.loss(self.model, batch)
        if self._lora_layers is None:  # PEFT's own context manager walks every module twice a call (~20 ms)
            self._lora_layers = [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)]
        for layer in self._lora_layers:
            layer.cast_input_dtype_enabled = False
        try:
            return self.loss(self.model, batch)
        finally:
            for layer in self._lora_layers:
                layer.cast_input_dtype_enabled = True

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
        loss = self(batch)
        self.losses.append(loss.detach())
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0])
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        tokens = num_tokens(batch)
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
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay, fused=self._fused(params) or None)
        total = self.trainer.estimated_stepping_batches
        warmup = math.ceil(self.warmup_fraction * total)
        scheduler = cosine_with_warmup(optimizer, warmup, total, self.warmup_from_zero, self.time_gone)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


    def _fused(self, params: list[torch.Tensor]) -> bool:
        """torch's fused AdamW kernel (CPU and CUDA): one pass over each tensor instead of a dozen ops
        (2.6x faster on the 420 LoRA tensors of the embedded model's step on a CPU), the same update
        rule. Not under fp16 loss scaling (clipping would see scaled gradients) or FSDP (sharded
        clipping), where Lightning's own clipping path stays."""
        trainer = self._trainer
        if trainer is not None and (str(trainer.precision).startswith("16") or "FSDP" in type(trainer.strategy).__name__):
            return False
        return all(p.device.type in ("cpu", "cuda") and p.dtype in FUSED_DTYPES for p in params)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning's mixed-precision plugin refuses to clip for a fused optimizer, a guard meant for
        fp16 loss scaling (`_fused` never fuses there); bf16 has no scaling, so the norm is clipped here."""
        if getattr(optimizer, "defaults", {}).get("fused") and gradient_clip_val:
            if gradient_clip_algorithm not in (None, "norm"):
                raise ValueError(f"gradient_clip_algorithm={gradient_clip_algorithm!r}: a fused AdamW clips by norm")
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, from_zero: bool = True,
    time_gone: Callable[[], float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to 0. `from_zero` (transformers' and the paper's schedule)
    runs step 0 at learning rate 0; otherwise warm-up step s runs at (s + 1) / (warmup + 1) of the
    rate, so no step is wasted (with 8 steps and 10% warm-up, 1 in 8 would be). `time_gone` (the
    fraction of the fit's time gone, run.deadline's: the fit is stopped at 1): each step runs at the
    schedule's point for its step or for the time gone, whichever is later, so a fit stopped then
    ends decayed."""
    scheduler = by_steps(optimizer, warmup_steps, total_steps, from_zero)
    if time_gone is not None:
        by_step = scheduler.lr_lambdas[0]

        def by_step_or_time(step: int) -> float:
            return by_step(min(max(step, time_gone() * total_steps), total_steps))  # past its end it would rise

        scheduler.lr_lambdas = [by_step_or_time for _ in scheduler.lr_lambdas]
    return scheduler


def by_steps(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, from_zero: bool
) -> torch.optim.lr_scheduler.LambdaLR:
    """`cosine_with_warmup` by steps alone."""
    if from_zero or warmup_steps == 0:
        return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
