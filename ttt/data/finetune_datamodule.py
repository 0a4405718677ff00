"""The fine-tuning DataModule: many training tasks' samples, resumable mid-epoch, one share per rank.

Samples are built and tokenized once (same text format and prefix loss as TTT). Each epoch's batch
order is length-grouped and seeded by (seed, epoch), so it can be rebuilt after a crash: the
DataModule's state in a Lightning checkpoint says how many batches of which epoch were trained,
and a resumed run skips exactly those instead of seeing the start of the epoch twice (the
DataModule is restored before Lightning first builds the loader; a loader's own state would be
loaded too late, and its count would be off by Lightning's prefetched batch). Under DDP each rank
takes every world_size-th batch of the same order (Lightning's sampler replacement is turned off).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence, Set
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Sampler
from transformers.trainer_pt_utils import LengthGroupedSampler

from ttt.arc.formats import TextFormat, get_format
from ttt.arc.grid import Grid
from ttt.arc.task import Task
from ttt.data.datamodule import TaskDataStats, collate, encode_tasks, require_pad_token
from ttt.data.finetune_tasks import FinetuneDataConfig, finetune_samples
from ttt.data.synthetic_tasks import SyntheticTask
from ttt.data.tokenize import Encoded, LossMode


class EpochOrder(Sampler[int]):
    """Sample indices in length-grouped batches, reshuffled per epoch from (seed, epoch); this
    rank's share only. Consecutive `batch_size` indices form one batch (only the last may be short)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches already trained in it)

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch`: the longest first (memory errors come early), a short one last."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        indices = list(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=generator))
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        full = sum(len(b) == self.batch_size for b in batches)
        head, short = batches[:full], batches[full:]  # full batches (longest first), then a short one
        rest = [head[i] for i in (1 + torch.randperm(max(full - 1, 0), generator=generator)).tolist()]
        batches = head[:1] + rest + short  # shuffled: within a megabatch the grouping sorts by length
        usable = len(batches) - len(batches) % self.world_size
        return batches[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[int]:
        batches = self.batches(self.epoch)
        if self.resume_at is not None and self.resume_at[0] == self.epoch:
            batches = batches[self.resume_at[1] :]
        self.resume_at = None
        yield from (i for batch in batches for i in batch)

    def __len__(self) -> int:
        return sum(len(b) for b in self.batches(self.epoch))


class FinetuneDataModule(LightningDataModule):
    """Fine-tuning batches over many training tasks (see `ttt.data.finetune_tasks`)."""

    def __init__(
        self,
        tasks: Sequence[Task],
        tokenizer: Any,
        text_format: str | TextFormat = "compact",
        data: FinetuneDataConfig = FinetuneDataConfig(),
        loss: LossMode = "demonstrations",
        max_seq_len: int = 8192,
        batch_size: int = 2,
        forbidden_grids: Set[Grid] = frozenset(),
        labels: str = "outputs",
        packing: bool = False,
    ):
        super().__init__()
        require_pad_token(tokenizer)
        self.tasks, self.tokenizer = list(tasks), tokenizer
        self.format = get_format(text_format) if isinstance(text_format, str) else text_format
        self.data, self.loss, self.labels = data, loss, labels
        self.max_seq_len, self.batch_size, self.packing = max_seq_len, batch_size, packing
        self.forbidden_grids = forbidden_grids  # evaluation grids: an augmented sample may hit one by chance
        self.resume_at: tuple[int, int] | None = None  # from a checkpoint: (epoch, batches trained in it)
        self.examples: list[Encoded] = []
        self.stats: list[TaskDataStats] = []

    def setup(self, stage: str | None = None) -> None:
        if self.examples:  # built once; a resumed fit calls setup again
            return
        self.examples, self.stats = encode_tasks(
            self.tasks, self.tokenizer, self.format, self.loss, self.max_seq_len, self.samples,
            warn_empty=False, labels=self.labels,  # empty tasks are common with big tasks; the stage reports the total dropped
        )  # fmt: skip

    def samples(self, task: Task, keep: Callable[[SyntheticTask], bool], length=None) -> list[SyntheticTask]:
        return [s for s in finetune_samples(task, self.data) if not self._has_forbidden(s) and keep(s)]

    def _has_forbidden(self, sample: SyntheticTask) -> bool:
        examples = (*sample.demonstrations, sample.test)
        return any(e.input in self.forbidden_grids or e.output in self.forbidden_grids for e in examples)

    def train_dataloader(self) -> DataLoader:
        if not self.examples:
            raise ValueError(f"no fine-tuning samples fit max_seq_len={self.max_seq_len} ({len(self.tasks)} tasks)")
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        order = EpochOrder([len(e) for e in self.examples], self.batch_size, self.data.seed, rank, world)
        order.resume_at, self.resume_at = self.resume_at, None
        return DataLoader(
            self.examples,
            batch_size=self.batch_size,
            sampler=order,
            collate_fn=lambda batch: collate(batch, self.tokenizer.pad_token_id, self.packing),
        )

    def state_dict(self) -> dict[str, int]:
        """Saved in Lightning checkpoints: the epoch and how many of its batches were trained."""
        if self.trainer is None:
            return {}
        loop = self.trainer.fit_loop
        return {"epoch": loop.epoch_progress.current.processed, "batches": loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self.resume_at = (state["epoch"], state["batches"])
