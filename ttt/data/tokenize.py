"""Token ids and prefix-loss labels for rendered tasks.

Segments are tokenized one by one and concatenated, so every output grid starts and ends on a
token boundary and its tokens can be labelled exactly. Loss modes (METHOD.md section 4):
- `demonstrations` (the paper's): every demonstration output after the first, plus the test output;
- `test_only` (ablation): the test output alone.
Prompt text (instructions, inputs, markers, chat-template tokens) and the first output never
carry loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ttt.arc.formats import Segment, TextFormat
from ttt.data.synthetic_tasks import SyntheticTask

IGNORE_INDEX = -100  # label of a token without loss (PyTorch cross-entropy's ignore_index)
LossMode = Literal["demonstrations", "test_only"]
LOSS_MODES = ("demonstrations", "test_only")


@dataclass(frozen=True)
class Encoded:
    """One training sequence: token ids and labels (IGNORE_INDEX where there is no loss)."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def has_loss(segment_index: int, segments: Sequence[Segment], loss: LossMode) -> bool:
    """Whether segment `segment_index` is a loss target under `loss`."""
    kind = segments[segment_index].kind
    if kind == "test_output":
        return True
    if kind != "demo_output" or loss == "test_only":
        return False
    first_demo_output = next(i for i, s in enumerate(segments) if s.kind == "demo_output")
    return segment_index != first_demo_output


class SegmentTokenizer:
    """Tokenizes segments (no special tokens added), caching texts that repeat across samples."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._cache: dict[str, list[int]] = {}

    def ids(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._cache[text]

    def encode(self, segments: Sequence[Segment], loss: LossMode = "demonstrations") -> Encoded:
        """Ids of all segments in order; labels copy the ids of loss segments only."""
        if loss not in LOSS_MODES:
            raise ValueError(f"unknown loss mode {loss!r}; choose one of {LOSS_MODES}")
        input_ids: list[int] = []
        labels: list[int] = []
        for i, segment in enumerate(segments):
            ids = self.ids(segment.text)
            input_ids += ids
            labels += ids if has_loss(i, segments, loss) else [IGNORE_INDEX] * len(ids)
        return Encoded(input_ids, labels)

    def encode_task(
        self, text_format: TextFormat, task: SyntheticTask, loss: LossMode = "demonstrations"
    ) -> Encoded:
        """A synthetic task rendered in `text_format` and encoded with its loss labels."""
        segments = text_format.render(
            task.demonstrations, task.test.input, task.test.output, tokenizer=self.tokenizer
        )
        return self.encode(segments, loss)
