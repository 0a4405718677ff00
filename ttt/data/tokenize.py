"""Token ids and prefix-loss labels for rendered tasks.

A segment is tokenized on its own, so its text starts and ends on a token boundary (the project's
layout), or together with the other segments of its group (`Segment.group`: the paper's reference
tokenizes each chat message whole, so ` -> [[` may share a token across the segments' border).

Which tokens carry loss is decided on characters, then read off each token's character offsets:
a token is labelled when all of its characters lie in a labelled span.
- Loss modes (METHOD.md section 4): `demonstrations` (the paper's): every demonstration output
  after the first, plus the test output; `test_only` (ablation): the test output alone.
- Label rules (`ttt.labels`): which characters around those outputs carry loss.
  - `outputs` (this project's): the output grids with their end markers, nothing else.
  - `paper` (the reference code's torchtune mask): each demonstration output with the space before
    it and the newline after it, and the whole answer turn: its chat header, the answer and the
    end-of-turn token.
Prompt text (instructions, inputs, markers) and the first output never carry loss.
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
LABEL_RULES = ("outputs", "paper")


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


def loss_spans(segments: Sequence[Segment], loss: LossMode, labels: str = "outputs") -> list[tuple[int, int]]:
    """Character spans [start, end) of the segments' joined text that carry loss."""
    if labels not in LABEL_RULES:
        raise ValueError(f"unknown label rule {labels!r}; choose one of {LABEL_RULES}")
    text = "".join(s.text for s in segments)
    starts = [0]
    for s in segments:
        starts.append(starts[-1] + len(s.text))
    spans = []
    for i, segment in enumerate(segments):
        if not has_loss(i, segments, loss):
            continue
        start, end = starts[i], starts[i + 1]
        if labels == "paper" and segment.kind == "demo_output":
            start -= text[start - 1 : start] == " "
            end += text[end : end + 1] == "\n"
        elif labels == "paper":  # the answer's turn: its header before, its end-of-turn after
            if i > 0 and segments[i - 1].kind == "answer_header":
                start = starts[i - 1]
            if i + 1 < len(segments) and segments[i + 1].kind == "answer_end":
                end = starts[i + 2]
        spans.append((start, end))
    return spans


class SegmentTokenizer:
    """Tokenizes segments (no special tokens added), caching texts that repeat across samples.

    The cache holds at most `max_texts` texts, the oldest dropped first, so a tokenizer that lives
    for a whole run (the predictor's, over hundreds of tasks) stays bounded; `forget` empties it.
    """

    def __init__(self, tokenizer: Any, max_texts: int = 20_000):
        self.tokenizer = tokenizer
        self.max_texts = max_texts
        self._cache: dict[str, list[int]] = {}
        self._offset_cache: dict[str, list[tuple[int, int]]] = {}

    def ids(self, text: str) -> list[int]:
        if text not in self._cache:
            self._remember(self._cache, text, self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._cache[text]

    def forget(self) -> None:
        """Empty the caches (the predictor does between tasks: texts repeat within a task, not across)."""
        self._cache.clear()
        self._offset_cache.clear()

    def _remember(self, cache: dict, text: str, value: Any) -> None:
        if len(cache) >= self.max_texts:
            del cache[next(iter(cache))]  # dicts keep insertion order: the oldest text
        cache[text] = value

    def ids_and_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of `text` and each token's character span (a fast tokenizer's offset mapping), from
        one tokenizer call."""
        if text not in self._offset_cache:
            if not getattr(self.tokenizer, "is_fast", False):
                raise ValueError("labels that cover part of a tokenized text need a fast tokenizer's offsets")
            out = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            if text not in self._cache:
                self._remember(self._cache, text, out["input_ids"])
            self._remember(self._offset_cache, text, [tuple(o) for o in out["offset_mapping"]])
        return self.ids(text), self._offset_cache[text]

    def encode(self, segments: Sequence[Segment], loss: LossMode = "demonstrations", labels: str = "outputs") -> Encoded:
        """Ids of all segments in order (a group's segments tokenized together); a token is
        labelled with its id when its characters lie in a span of `loss_spans`."""
        if loss not in LOSS_MODES:
            raise ValueError(f"unknown loss mode {loss!r}; choose one of {LOSS_MODES}")
        spans = loss_spans(segments, loss, labels)
        input_ids: list[int] = []
        label_ids: list[int] = []
        start = 0
        for run in _runs(segments):
            text = "".join(s.text for s in run)
            end = start + len(text)
            inside = [(max(a, start), min(b, end)) for a, b in spans if a < end and b > start]
            if not inside or inside == [(start, end)]:  # all or nothing: no offsets needed
                ids = self.ids(text)
                label_ids += ids if inside else [IGNORE_INDEX] * len(ids)
            else:
                ids, offsets = self.ids_and_offsets(text)
                label_ids += [
                    i if any(a <= start + lo and start + hi <= b for a, b in inside) else IGNORE_INDEX
                    for i, (lo, hi) in zip(ids, offsets)
                ]
            input_ids += ids
            start = end
        return Encoded(input_ids, label_ids)

    def encode_task(
        self, text_format: TextFormat, task: SyntheticTask, loss: LossMode = "demonstrations", labels: str = "outputs"
    ) -> Encoded:
        """A synthetic task rendered in `text_format` and encoded with its loss labels."""
        segments = text_format.render(
            task.demonstrations, task.test.input, task.test.output, tokenizer=self.tokenizer
        )
        return self.encode(segments, loss, labels)


def _runs(segments: Sequence[Segment]) -> list[list[Segment]]:
    """Segments in tokenization runs: a group's consecutive segments together, the others alone."""
    runs: list[list[Segment]] = []
    for s in segments:
        if runs and s.group is not None and runs[-1][-1].group == s.group:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs
