"""Every file a run writes, by name, and the atomic writers they go through.

A run directory (`paths.output_dir`):

    run.json              what this job is: shard index and count, its task ids, its settings,
                          and its state (running | finished | interrupted | failed)
    configs/launch-N.yaml the composed config of every launch into this directory (resumes keep
                          the earlier ones; Hydra's .hydra/config.yaml is the latest only)
    submission.json       Kaggle format, every task          (ttt.report)
    results.json          one row per task                   (ttt.report)
    metrics.json          the run's summary                  (ttt.report)
    report.html           every task's grids, attempts and diagnostics, one file  (ttt.html_report)
    <task_id>/task.json   the task itself (ARC JSON), so the run directory draws without the data
    <task_id>/ttt.json    the task's TTT record, with the settings that made it  (ttt.adapt)
    <task_id>/adapter_*   its LoRA adapter (PEFT format)     (ttt.model.lora.Adapter.save)
    <task_id>/predictions.json  attempts, candidates, scores (ttt.inference.callback)
    <task_id>/logs/       Lightning's CSV metrics of its fit
    shared/               the shared-adapter ablation's adapter and record

A fine-tuning run writes `finetune.json`, `model/`, `adapter/` (LoRA fine-tuning) and
`checkpoints/` (ttt.finetune).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttt.selection_rules import SCORE_KEYS

RUN_RECORD = "run.json"
CONFIGS_DIR = "configs"
SUBMISSION = "submission.json"
RESULTS = "results.json"
METRICS = "metrics.json"
TASK_RECORD = "task.json"
TTT_RECORD = "ttt.json"
PREDICTIONS = "predictions.json"
REPORT = "report.html"
SWEEP_INDEX = "index.html"  # a multirun's page linking each job's report
SHARED = "shared"  # adapter folder of the shared-adapter ablation
FINETUNE_RECORD = "finetune.json"
FINETUNE_MODEL_DIR = "model"  # the fine-tuned model in Hugging Face format
FINETUNE_ADAPTER_DIR = "adapter"  # finetune.method=lora: the LoRA alone (model.adapter=<it>)
CHECKPOINT_DIR = "checkpoints"
LOGS_DIR = "logs"  # a task's Lightning CSV metrics
HYDRA_OVERRIDES = ".hydra/overrides.yaml"  # what train.py was given (Hydra's record)
NOT_TASK_DIRS = {SHARED, CONFIGS_DIR, ".hydra", "wandb", LOGS_DIR, CHECKPOINT_DIR}

# The numbers a run returns (metrics.json; finetune.json for the fine-tuning stage): what
# `objective=<key>` may hand a sweeper.
METRIC_KEYS = (
    "num_tasks", "num_scored", "score", *SCORE_KEYS, "all_solved", "oracle", "view_accuracy", "parse_rate",
    "answers_per_view", "base_nll", "ttt_nll", "nll_lowered", "nll_measured", "tasks_solved", "ttt_done", "ttt_failed",
    "not_predicted", "ttt_seconds", "inference_seconds", "ttt_seconds_per_task", "ttt_tokens", "demonstrations_dropped",
    "cut_short", "peak_rss_mib", "rss_growth_mib",
)  # fmt: skip
FINETUNE_METRIC_KEYS = ("first_loss", "last_loss", "tokens_per_s", "global_step", "num_samples")


@dataclass(frozen=True)
class RunDir:
    """A run directory's layout (the module docstring's map): where the run's records and each
    task's live. Everything that reads or writes a run directory goes through it."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # the run's own files
    run_record = property(lambda self: self.root / RUN_RECORD)
    submission = property(lambda self: self.root / SUBMISSION)
    results = property(lambda self: self.root / RESULTS)
    metrics = property(lambda self: self.root / METRICS)
    report = property(lambda self: self.root / REPORT)
    configs = property(lambda self: self.root / CONFIGS_DIR)
    overrides = property(lambda self: self.root / HYDRA_OVERRIDES)
    checkpoint = property(lambda self: self.root / CHECKPOINT_DIR / "last.ckpt")  # fine-tuning resumes from it
    finetune_record = property(lambda self: self.root / FINETUNE_RECORD)
    finetune_model = property(lambda self: self.root / FINETUNE_MODEL_DIR)
    finetune_adapter = property(lambda self: self.root / FINETUNE_ADAPTER_DIR)

    # per task, or per adaptation unit: a task's folder, or shared/ for the shared-adapter ablation
    def unit(self, name: str) -> Path:
        return self.root / name

    def task(self, task_id: str) -> Path:
        return self.root / task_id / TASK_RECORD

    def ttt_record(self, unit: str) -> Path:
        return self.root / unit / TTT_RECORD

    def predictions(self, task_id: str) -> Path:
        return self.root / task_id / PREDICTIONS

    def logs(self, unit: str) -> Path:
        return self.root / unit / LOGS_DIR

    def adaptation_of(self, task_id: str) -> Path:
        """The TTT record that adapted `task_id`: its own, else the shared adapter's."""
        own = self.ttt_record(task_id)
        return own if own.is_file() or not self.ttt_record(SHARED).is_file() else self.ttt_record(SHARED)

    def task_ids(self, first: list[str] | tuple[str, ...] = ()) -> list[str]:
        """`first` (e.g. run.json's order), then every other folder holding a task's record."""
        found = sorted(
            d.name for d in self.root.iterdir()
            if d.is_dir() and d.name not in NOT_TASK_DIRS and not d.name.startswith(".")
            and any((d / name).is_file() for name in (TASK_RECORD, PREDICTIONS, TTT_RECORD))
        ) if self.root.is_dir() else []  # fmt: skip
        return list(first) + [t for t in found if t not in first]


def write_text_atomic(path: Path, text: str) -> None:
    """Write text so that a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically (see `write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def timestamp() -> str:
    """Now, as run.json records when a job started and ended (local time with its UTC offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None
