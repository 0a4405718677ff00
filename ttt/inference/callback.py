"""The Lightning callback that predicts a task's test outputs when its adaptation ends.

At `on_fit_end` it runs augmented inference with the adapted model for every task of the fit's
DataModule (one task per fit; all of them for the shared adapter) and writes each task's
`predictions.json` atomically under the run's output directory. `predict` is also called
directly for tasks that were not adapted (`ttt.enabled=false`, or a failed adaptation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from tqdm.auto import tqdm

from ttt.arc.formats import TextFormat
from ttt.arc.task import Task
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.generation import Generator, answer_logprobs, answer_token_logprobs
from ttt.inference.heldout import heldout_target, measure
from ttt.inference.predict import InferenceSettings, predict_task
from ttt.records import write_json_atomic

PREDICTIONS_FILE = "predictions.json"  # per task: attempts, candidates, scores


class AugmentedInference(pl.Callback):
    """Augmented inference + voting for the tasks a fit adapted to."""

    def __init__(
        self,
        tokenizer: Any,
        text_format: TextFormat,
        settings: InferenceSettings,
        out_dir: str | Path,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        restrict_alphabet: bool = True,
    ):
        self.tokenizer, self.format, self.settings = tokenizer, text_format, settings
        self.out_dir = Path(out_dir)
        self.batch_size, self.max_new_tokens, self.restrict_alphabet = batch_size, max_new_tokens, restrict_alphabet
        self.encoder = SegmentTokenizer(tokenizer)

    def predict(self, model: Any, tasks: Sequence[Task], note: str | None = None) -> list[dict]:
        """Predict, write and return each task's result."""
        generator = Generator(
            model, self.tokenizer, self.format, self.batch_size, self.max_new_tokens, self.restrict_alphabet
        )

        def answer(prompted):
            return generator([p.prompt for p in prompted])

        def score(pairs):
            return answer_logprobs(model, pairs, self.tokenizer.pad_token_id, self.batch_size)

        def token_logprobs(pairs):
            return answer_token_logprobs(model, pairs, self.tokenizer.pad_token_id, self.batch_size)

        results = []
        for task in tasks:
            result = predict_task(task, answer, self.encoder, self.format, self.settings, score)
            held_out = measure(heldout_target(task, self.format, self.encoder, self.settings.max_seq_len), token_logprobs)
            # the predicting model's fit to the held-out answer (see ttt.inference.heldout)
            result["heldout"] = None if held_out is None else vars(held_out)
            if note:
                result["note"] = note
            write_json_atomic(self.out_dir / task.id / PREDICTIONS_FILE, result)
            tqdm.write(prediction_line(result))
            results.append(result)
        return results

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.predict(pl_module.model, trainer.datamodule.tasks)


def prediction_line(result: dict) -> str:
    """One line per predicted task."""
    parsed = sum(t["num_parsed"] for t in result["tests"])
    text = f"{result['task_id']}: {result['num_views']} views, {parsed} parsed, {result['seconds']:.1f} s"
    if result.get("heldout"):
        text += f", held-out {result['heldout']['target']} NLL {result['heldout']['nll']:.3f}"
    if result["score"] is not None:
        text += f", score {result['score']:.2f}, right answer among candidates {result['oracle']:.2f}"
    return text
