"""Held-out NLL: how well a model predicts a task's answer, measured before and after adaptation.

The target is the true output of every test input, prompted like the identity view at inference
(all demonstrations in their order, the last ones dropped while the prompt is over the length
limit). A task without solutions is measured on its last demonstration instead, predicted from the
others: TTT has trained on that pair, so its drop flatters adaptation; `target` says which it was.

One teacher-forced forward pass per test input gives both numbers:
- `nll`: mean negative log-likelihood per answer token, the end marker included (lower is better;
  the TTT recipe search minimises the adapted value);
- `end_prob`: the probability of the end marker right after the complete grid, i.e. whether the
  model knows where the answer stops (a low value shows up as answers that run on and fail to parse).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ttt.arc.formats import TextFormat
from ttt.arc.task import Task
from ttt.arc.transforms import Dihedral
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.predict import fit_prompt
from ttt.inference.views import View
from ttt.model.teacher_forcing import Pairs, answer_token_logprobs

TokenLogprobs = Callable[[Pairs], list[list[float]]]  # per pair, each answer token's log-probability


@dataclass(frozen=True)
class HeldOutTarget:
    """Prompt and answer token ids of a task's held-out outputs."""

    target: str  # "test" (true test outputs) | "demo" (last demonstration; no solutions known)
    pairs: list[tuple[list[int], list[int]]]


@dataclass(frozen=True)
class HeldOut:
    """A model's fit to the held-out outputs."""

    target: str
    nll: float  # mean over answer tokens (all test inputs pooled)
    end_prob: float  # mean over test inputs


def heldout_target(task: Task, text_format: TextFormat, encoder: SegmentTokenizer, max_seq_len: int) -> HeldOutTarget:
    """The held-out answers of `task`; `pairs` is empty when no prompt fits `max_seq_len`."""
    target = "test"
    if not task.has_solutions:
        target, task = "demo", Task(task.id, task.train[:-1], task.train[-1:])
    identity = View(Dihedral("identity"), "identity", tuple(range(len(task.train))))
    pairs = []
    for test in task.test:
        fitted = fit_prompt(task, identity, test.input, text_format, encoder, max_seq_len)
        if fitted is not None:
            pairs.append((fitted.prompt, encoder.ids(text_format.output_text(test.output))))
    return HeldOutTarget(target, pairs)


def measure(held_out: HeldOutTarget, token_logprobs: TokenLogprobs) -> HeldOut | None:
    """NLL and end-marker probability under a model (None: nothing to measure)."""
    if not held_out.pairs:
        return None
    per_pair = token_logprobs(held_out.pairs)
    tokens = [lp for pair in per_pair for lp in pair]
    return HeldOut(
        held_out.target,
        nll=round(-sum(tokens) / len(tokens), 4),
        end_prob=round(sum(math.exp(pair[-1]) for pair in per_pair) / len(per_pair), 4),
    )


def measure_model(held_out: HeldOutTarget, model: Any, pad_id: int, batch_size: int = 8) -> HeldOut | None:
    """`measure` under `model`'s teacher-forced log-probabilities over the whole vocabulary
    (`ttt.model.teacher_forcing`): the one held-out NLL of TTT, fine-tuning, shipping and prediction."""
    return measure(held_out, lambda pairs: answer_token_logprobs(model, pairs, pad_id, batch_size))
