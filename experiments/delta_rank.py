"""What a rank-R LoRA of a fine-tuned model's weight difference keeps: held-out NLL of the fine-tuned
model itself against `ttt.model.delta_lora` approximations of it at each rank, and each one's size in
bf16, on the run's held-out training tasks (the 32 of holdout_32 and the second dev set, as
experiments/plot_heldout.py splits them).

    python experiments/delta_rank.py /work/runs/ft_full --ranks 16 32 [--out F.json]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from plot_heldout import subsets
from safetensors.torch import load_file

from ttt.model.delta_lora import lora_from_delta
from ttt.model.loading import load_model
from ttt.ship_adapter import heldout_nll, training_tasks_by_id
from ttt.outputs import FINETUNE_MODEL_DIR, FINETUNE_RECORD, RUN_RECORD, read_json, write_json_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished stage=finetune run (its model/ and finetune.json)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--out", type=Path, help="write the rows as JSON here too")
    args = parser.parse_args()
    record, settings = read_json(args.run_dir / FINETUNE_RECORD), read_json(args.run_dir / RUN_RECORD)["settings"]
    tasks = training_tasks_by_id(record["holdout_task_ids"])
    fmt, chat, max_seq_len = settings["model.format"], settings.get("model.chat", "template"), settings["finetune.max_seq_len"]
    tokenizer, base = load_model(settings["model.name_or_path"], "fp32", "cpu", settings["model.attn_implementation"])
    tuned = load_file(args.run_dir / FINETUNE_MODEL_DIR / "model.safetensors")
    groups = subsets()

    def row(name: str, model: torch.nn.Module, mb: float | None, seconds: float) -> dict:
        nll = heldout_nll(model, tokenizer, tasks, fmt, max_seq_len, chat)
        means = {g: round(statistics.fmean(nll[t] for t in ids if t in nll), 4) for g, ids in groups.items()}
        print(f"{name:>12}  {'  '.join(f'{g} {v:.4f}' for g, v in means.items())}  bf16 {mb or 0:.1f} MB  build {seconds:.0f} s", flush=True)
        return {"variant": name, **means, "bf16_mb": mb, "build_seconds": round(seconds, 1), "tasks": nll}

    rows = [row("base", base, None, 0.0)]
    full = copy.deepcopy(base)
    full.load_state_dict(tuned, strict=False)  # lm_head is tied to the embedding: not in the file
    rows.append(row("fine-tuned", full, sum(v.numel() for v in tuned.values()) * 2 / 1e6, 0.0))
    del full
    for rank in args.ranks:
        start = time.perf_counter()
        peft_model = lora_from_delta(copy.deepcopy(base), tuned, rank, settings["finetune.lora.target_modules"])
        mb = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n or "modules_to_save" in n) * 2 / 1e6
        rows.append(row(f"rank {rank}", peft_model.merge_and_unload(), mb, time.perf_counter() - start))
    if args.out:
        write_json_atomic(args.out, {"run_dir": str(args.run_dir), "rows": rows})


if __name__ == "__main__":
    main()
