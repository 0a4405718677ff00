"""The LightningDataModule that turns ARC tasks into tokenized TTT batches.

One task for per-task adapters (the paper's method), or several tasks' data pooled for the
shared-adapter ablation. Batches group samples of similar length (transformers'
`LengthGroupedSampler`, longest batch first so memory errors come early) and pad on the right.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers.trainer_pt_utils import LengthGroupedSampler

from ttt.arc.formats import TextFormat, get_format
from ttt.arc.task import Task
from ttt.console import interactive
from ttt.data.padding import pad
from ttt.data.paper_ttt_data import build_paper_ttt_tasks
from ttt.data.synthetic_tasks import SyntheticTask, TTTDataConfig, build_ttt_tasks
from ttt.data.tokenize import IGNORE_INDEX, Encoded, LossMode, SegmentTokenizer

log = logging.getLogger(__name__)


@dataclass
class TaskDataStats:
    """What one task contributed: samples kept, samples dropped for length, tokens."""

    task_id: str
    num_examples: int
    num_too_long: int
    num_tokens: int
    num_loss_tokens: int


def collate(batch: Sequence[Encoded], pad_token_id: int, packing: bool = False) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ids with the pad token, labels with IGNORE_INDEX, attention mask 0. With
    `packing`, the samples go end to end in one row instead, with no padding and no attention mask:
    positions restart at each sample, from which transformers' attention masks keep each sample to
    itself (block-diagonal causal), and each sample's first token is unlabelled, so no sample
    predicts the next one's start. The loss is then that of the padded batch (the mean over the
    same labelled tokens), its matrices one (tokens x hidden) product without padding rows."""
    if packing:
        ids = [i for e in batch for i in e.input_ids]
        labels = [label for e in batch for label in (IGNORE_INDEX, *e.labels[1:])]
        positions = [p for e in batch for p in range(len(e))]
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]), "position_ids": torch.tensor([positions])}
    input_ids, attention_mask = pad([e.input_ids for e in batch], pad_token_id)
    labels, _ = pad([e.labels for e in batch], IGNORE_INDEX)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def num_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Real (not padding) tokens of a padded or packed batch."""
    mask = batch.get("attention_mask")
    return int(batch["input_ids"].numel() if mask is None else mask.sum())


def require_pad_token(tokenizer: Any) -> None:
    if getattr(tokenizer, "pad_token_id", None) is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token before building batches")


# samples(task, keep, length): a task's training samples; `keep` rejects (and counts) those over
# max_seq_len, `length` is a sample's tokens (for a token budget)
Samples = Callable[[Task, Callable[[SyntheticTask], bool], Callable[[SyntheticTask], int]], list[SyntheticTask]]


def encode_tasks(
    tasks: Sequence[Task],
    tokenizer: Any,
    text_format: TextFormat,
    loss: LossMode,
    max_seq_len: int,
    samples: Samples,
    warn_empty: bool = True,
    labels: str = "outputs",
) -> tuple[list[Encoded], list[TaskDataStats]]:
    """Every task's training samples (`samples(task, keep, length)`, where `keep` rejects and counts
    those over `max_seq_len`), tokenized with the prefix-loss labels, and what each task contributed."""
    segment_tokenizer = SegmentTokenizer(tokenizer)
    examples: list[Encoded] = []
    stats: list[TaskDataStats] = []
    for task in tqdm(tasks, desc="building samples", unit="task", disable=len(tasks) < 20 or not interactive()):
        encoded: dict[SyntheticTask, Encoded] = {}
        too_long = 0

        def length(sample: SyntheticTask) -> int:
            if sample not in encoded:
                encoded[sample] = segment_tokenizer.encode_task(text_format, sample, loss, labels)
            return len(encoded[sample])

        def fits(sample: SyntheticTask) -> bool:
            nonlocal too_long
            too_long += length(sample) > max_seq_len
            return length(sample) <= max_seq_len

        kept = [encoded[s] for s in samples(task, fits, length)]
        examples += kept
        stats.append(
            TaskDataStats(
                task.id, len(kept), too_long, sum(len(e) for e in kept),
                sum(label != IGNORE_INDEX for e in kept for label in e.labels),
            )  # fmt: skip
        )
        if not kept and warn_empty:
            log.warning("task %s: no TTT sample kept (each over max_seq_len=%d or the token budget)", task.id, max_seq_len)
    return examples, stats


class TTTDataModule(LightningDataModule):
    """TTT batches for one task (`tasks=[task]`) or pooled over several (shared adapter)."""

    def __init__(
        self,
        tasks: Sequence[Task],
        tokenizer: Any,
        text_format: str | TextFormat = "compact",
        data: TTTDataConfig = TTTDataConfig(),
        loss: LossMode = "demonstrations",
        max_seq_len: int = 8192,
        batch_size: int = 2,
        labels: str = "outputs",
        packing: bool = False,
    ):
        super().__init__()
        require_pad_token(tokenizer)
        self.tasks, self.packing = list(tasks), packing
        self.tokenizer = tokenizer
        self.format = get_format(text_format) if isinstance(text_format, str) else text_format
        self.data, self.loss, self.labels = data, loss, labels
        self.max_seq_len, self.batch_size = max_seq_len, batch_size
        self.examples: list[Encoded] = []
        self.stats: list[TaskDataStats] = []

    def setup(self, stage: str | None = None) -> None:
        if self.examples:  # Lightning calls setup once per fit; the data does not change
            return
        self.examples, self.stats = encode_tasks(
            self.tasks, self.tokenizer, self.format, self.loss, self.max_seq_len,
            lambda task, keep, length: self._build(task, self.data, keep, length), labels=self.labels,
        )  # fmt: skip

    @property
    def _build(self):
        """The data rule: this project's (`ttt.data.synthetic_tasks`) or the paper's."""
        return build_paper_ttt_tasks if self.data.rule == "paper" else build_ttt_tasks

    def _sampler(self) -> LengthGroupedSampler:
        generator = torch.Generator().manual_seed(self.data.seed)
        return LengthGroupedSampler(self.batch_size, lengths=[len(e) for e in self.examples], generator=generator)

    def train_dataloader(self) -> DataLoader:
        if not self.examples:
            ids = ", ".join(t.id for t in self.tasks)
            limits = f"max_seq_len={self.max_seq_len}" + (
                f" or ttt.max_tokens={self.data.max_tokens}" if self.data.max_tokens is not None else ""
            )
            raise ValueError(f"task(s) {ids}: no TTT examples (every sample over {limits})")
        return DataLoader(
            self.examples,
            batch_size=self.batch_size,
            sampler=self._sampler(),
            collate_fn=lambda batch: collate(batch, self.tokenizer.pad_token_id, self.packing),
        )

    def padding_fraction(self) -> float:
        """Fraction of the tokens in one epoch's batches that are padding (none when packed)."""
        if not self.examples or self.packing:
            return 0.0
        order = list(self._sampler())
        lengths = [len(self.examples[i]) for i in order]
        padded = real = 0
        for start in range(0, len(lengths), self.batch_size):
            chunk = lengths[start : start + self.batch_size]
            padded += max(chunk) * len(chunk)
            real += sum(chunk)
        return 1 - real / padded if padded else 0.0

    def num_batches(self) -> int:
        return math.ceil(len(self.examples) / self.batch_size)
