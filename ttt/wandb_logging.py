"""Weights & Biases for a run: config, per-task loss curves, a per-task results table with grid
pictures (`ttt.grid_drawing`, as in report.html; wrong cells of an attempt crossed out), summary
metrics, and report.html itself among the run's files. Offline unless an API key is set, so runs
always leave real files.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from ttt.arc.task import Task
from ttt.grid_drawing import grid_svg
from ttt.settings import LoggerSettings, RunSettings

def run_group(logger: LoggerSettings) -> str:
    """The W&B group: the configured one, the sweep folder for -m jobs, else the experiment."""
    if logger.group:
        return logger.group
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    if hydra.mode is not None and hydra.mode.name == "MULTIRUN":
        return Path(hydra.sweep.dir).name
    return hydra.runtime.choices.get("experiment") or "default"


class WandbRun:
    """One W&B run for one Hydra job; `finish()` must be called (the run calls it in `finally`)."""

    def __init__(self, settings: RunSettings, out_dir: Path):
        import wandb

        self.wandb = wandb
        logger = settings.logger
        mode = logger.mode or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(
            project=logger.project,
            entity=logger.entity,
            group=run_group(logger),
            job_type=logger.job_type,
            name=out_dir.name,
            dir=str(out_dir),
            mode=mode,
            config=dataclasses.asdict(settings),
            reinit="create_new",
        )
        self.log_grids = logger.log_grids

    def callback(self) -> pl.Callback:
        """Logs each task's training loss against that task's own step."""
        return _TaskCurves(self.run)

    def log_results(self, rows: Sequence[dict], tasks: Sequence[Task], metrics: dict) -> None:
        """The per-task results table and the summary metrics."""
        truths = {t.id: t for t in tasks}
        columns = ["task_id", "level", "score", "oracle", "ttt_status", "ttt_tokens", "ttt_seconds", "inference_seconds",
                   "ttt_final_loss"]  # fmt: skip
        diagnostics = ["base_nll", "ttt_nll", "nll_drop", "base_end_prob", "ttt_end_prob", "lora_update_norm", "parse_rate"]
        columns += diagnostics
        if self.log_grids:
            columns += ["test_input", "attempt_1", "attempt_2", "truth"]
        table = self.wandb.Table(columns=columns)
        for row in rows:
            values = [row["task_id"], row.get("level"), row["score"], row["oracle"], row["ttt_status"], row.get("ttt_tokens"),
                      row["ttt_seconds"], row["seconds"], row["ttt_final_loss"]] + [row.get(k) for k in diagnostics]  # fmt: skip
            if self.log_grids:
                test = truths[row["task_id"]].test[0]
                first = row["attempts"][0]
                pictures = [  # as report.html draws them (same labels: the same SVG)
                    grid_svg(test.input, label="test input"),
                    *(grid_svg(first[f"attempt_{n}"], test.output, label=f"attempt {n}") for n in (1, 2)),
                    grid_svg(test.output, label="true output"),
                ]
                values += [self.wandb.Html(p) for p in pictures]
            table.add_data(*values)
        self.run.log({"results": table})
        self.run.summary.update({k: v for k, v in metrics.items() if v is not None and not isinstance(v, dict)})
        self.run.summary.update(level_metrics(metrics))

    def save_file(self, path: Path) -> None:
        """A file of the run directory among the W&B run's files (report.html: the Files tab)."""
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def level_metrics(metrics: dict) -> dict[str, float]:
    """The scores per level as flat keys (`score/<level>`, `tasks_solved/<level>`, ...), which W&B
    plots and a sweep's table compares beside the totals."""
    return {
        f"{key}/{level}": value
        for level, scores in (metrics.get("by_level") or {}).items()
        for key, value in scores.items()
        if value is not None
    }


class _TaskCurves(pl.Callback):
    def __init__(self, run: Any):
        self.run = run
        self.global_step = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tasks = trainer.datamodule.tasks
        task = tasks[0].id if len(tasks) == 1 else "shared"
        key = f"ttt/{task}"
        if trainer.global_step == 1:
            self.run.define_metric(f"{key}/loss", step_metric=f"{key}/step")
        metrics = trainer.callback_metrics  # this step's loss and lr (tokens/s: the previous step's)
        self.global_step += 1
        logged = {f"{key}/step": trainer.global_step, "ttt/global_step": self.global_step}
        if "train/loss" in metrics:
            logged[f"{key}/loss"] = logged["ttt/loss"] = float(metrics["train/loss"])
        for name in ("lr", "tokens_per_s"):
            if f"train/{name}" in metrics:
                logged[f"ttt/{name}"] = float(metrics[f"train/{name}"])
        self.run.log(logged)
