"""Predict tasks with a model: prompts for every view, decoding, voting, files.

`Predictor.predict(model, tasks)` runs augmented inference (`ttt.inference.predict.predict_task`)
with the model's decoder and scorer (`inference.decoder`: greedy or dfs from cached prompts, or
transformers' generate), on the weights `inference_weights` prepares (LoRA merged, dtype),
measures the model's held-out NLL, and writes each task's `predictions.json` atomically, stamped
with the settings that made it (resumes check them). The
Lightning callback (`ttt.inference.callback`) calls it when a task's adaptation ends; the run calls
it directly for tasks predicted by the base model (TTT off, or failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ttt import host_memory, interrupt
from ttt.arc.formats import TextFormat
from ttt.arc.task import Task
from ttt.data.tokenize import SegmentTokenizer
from ttt.deadline import RunClock
from ttt.inference.decoding import Decoder
from ttt.inference.generation import Generator
from ttt.inference.heldout import heldout_target, measure_model
from ttt.inference.inference_weights import inference_weights
from ttt.inference.predict import Answer, InferenceSettings, Score, predict_task
from ttt.model.teacher_forcing import answer_logprobs
from ttt.outputs import RunDir, write_json_atomic


class Predictor:
    """Augmented inference + voting for any model, writing `<out_dir>/<task_id>/predictions.json`."""

    def __init__(
        self,
        tokenizer: Any,
        text_format: TextFormat,
        settings: InferenceSettings,
        out_dir: str | Path,
        stamp: dict[str, Any] | None = None,
        clock: RunClock | None = None,
    ):
        self.tokenizer, self.format, self.settings = tokenizer, text_format, settings
        self.out_dir = Path(out_dir)
        self.stamp = stamp  # the settings the predictions depend on (RunSettings.affecting_predictions)
        self.encoder = SegmentTokenizer(tokenizer)
        self.clock = clock  # run.deadline: decoding stops when the task's share of the time is spent
        self._decoder: Decoder | None = None
        self._until: float | None = None  # the current task's decoding stops at this time.monotonic()

    def predict(
        self, model: Any, tasks: Sequence[Task], note: str | None = None, tasks_left: int | None = None,
        by: str = "adapter",
    ) -> list[dict]:
        """Predict, write and return each task's result. `by`: which weights predict, recorded as
        `predicted_by` (adapter: the task's own | base: the base model, its NLL reported as the
        base NLL); `note`: why, in words. `tasks_left`: the run's tasks left,
        `tasks`' first counted, when each task's share of the time left (run.deadline) starts here;
        None when TTT's loop started it (the callback)."""
        s = self.settings
        results = []
        with inference_weights(model, s.merge_lora, s.dtype) as fast:
            answer, score, forget = self._decoding(fast)
            for number, task in enumerate(tasks):
                interrupt.check()  # a stop signal whose exception a finalizer swallowed
                clock, cut_short = self.clock, None
                if clock is not None and tasks_left is not None:
                    clock.begin(tasks_left - number, adapting=False)
                if clock is not None and clock.expired():  # the fallback attempts, nothing decoded
                    result = predict_task(task, lambda prompted: [[] for _ in prompted], self.encoder, self.format, s)
                    cut_short = f"deadline: not predicted (out of time after {clock.elapsed():.0f} s)"
                else:
                    self._until, bound = self._decoding_until(clock)
                    result = predict_task(task, answer, self.encoder, self.format, s, score)
                    cut = self._decoder.cut_views if self._decoder is not None else 0
                    if cut:
                        cut_short = f"{bound}: {cut} of {result['num_views']} views cut short"
                forget()
                result["cut_short"] = cut_short
                held_out = measure_model(
                    heldout_target(task, self.format, self.encoder, s.max_seq_len), model, self.tokenizer.pad_token_id, s.batch_size
                )  # the predicting model's fit to the held-out answer (ttt.inference.heldout)
                result["heldout"] = None if held_out is None else vars(held_out)
                result["predicted_by"] = by
                if note:
                    result["note"] = note
                result["settings"] = self.stamp
                self.encoder.forget()  # texts repeat within a task's views, not across tasks
                host_memory.release()  # the free heap kept for reuse goes back between tasks
                result["rss_mib"] = host_memory.resident_mib()  # after the task: flat over a long run
                result["peak_rss_mib"] = host_memory.peak_resident_mib()
                write_json_atomic(RunDir(self.out_dir).predictions(task.id), result)
                tqdm.write(prediction_line(result))
                results.append(result)
        return results

    def _decoding_until(self, clock: RunClock | None) -> tuple[float | None, str]:
        """When the task's decoding must stop (a `time.monotonic()`, None: never) and what sets it:
        run.deadline's share or `inference.max_seconds`, the earlier."""
        until = None if clock is None else clock.inference_until()
        if self.settings.max_seconds is None:
            return until, "deadline"
        capped = time.monotonic() + self.settings.max_seconds
        return (until, "deadline") if until is not None and until <= capped else (capped, "inference.max_seconds")

    def _decoding(self, model: Any) -> tuple[Answer, Score, Callable[[], None]]:
        """(answer views, score candidates, forget the task's cached prompts) for `inference.decoder`."""
        s = self.settings
        if s.decoder == "generate":
            generator = Generator(model, self.tokenizer, self.format, s.batch_size, s.max_new_tokens, s.restrict_alphabet)
            return (
                lambda prompted: [[g] for g in generator([p.prompt for p in prompted])],
                lambda pairs: answer_logprobs(model, pairs, self.tokenizer.pad_token_id, s.batch_size),
                lambda: None,
            )
        decoder = self._decoder = Decoder(
            model, self.tokenizer, self.format, s.batch_size, s.max_new_tokens, s.restrict_alphabet, s.normalise,
            s.constrain_shape,
        )
        if s.decoder == "dfs":
            answer = lambda prompted: decoder.dfs(  # noqa: E731
                [p.prompt for p in prompted], s.dfs_min_prob, s.dfs_max_answers, s.dfs_threshold, s.dfs_max_branches,
                s.dfs_keep_greedy, [p.shape for p in prompted], self._until,
            )
        else:
            answer = lambda prompted: [  # noqa: E731
                [g] if g is not None else []
                for g in decoder.greedy([p.prompt for p in prompted], [p.shape for p in prompted], self._until)
            ]
        return answer, decoder.score, decoder.forget


def prediction_line(result: dict) -> str:
    """One line per predicted task."""
    parsed = sum(t["num_parsed"] for t in result["tests"])
    text = f"{result['task_id']}: {result['num_views']} views, {parsed} answers parsed, {result['seconds']:.1f} s"
    if result.get("demonstrations_dropped"):
        text += f", {result['demonstrations_dropped']} demonstrations left out of prompts over max_seq_len"
    if result.get("heldout"):
        text += f", held-out {result['heldout']['target']} NLL {result['heldout']['nll']:.3f}"
    if result.get("cut_short"):
        text += f", {result['cut_short']}"
    if result["score"] is not None:
        text += f", score {result['score']:.2f}, right answer among candidates {result['oracle']:.2f}"
    return text
