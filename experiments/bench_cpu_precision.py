"""Training throughput of the embedded model by weight dtype / autocast and LoRA rank, in one run.

One forward + backward of a 2 x 400-token batch (digits, labels on every token), timed twice after
a warm-up, for each setting. Decides the CPU defaults (see results/cpu_precision.md).

    python experiments/bench_cpu_precision.py
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ttt.model.loading import load_model
from ttt.model.lora import LoraSettings, add_lora

SETTINGS = [  # (weights, LoRA rank, bf16 autocast)
    ("bf16", 128, True), ("bf16", 16, True), ("fp32", 128, False), ("fp32", 16, False), ("bf16", 128, False),
]  # fmt: skip


def main() -> None:
    ids = torch.randint(32, 42, (2, 400))  # digit tokens of the SmolLM2 vocabulary
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    rows = []
    for dtype, rank, autocast in SETTINGS:
        _, model = load_model("embedded", dtype)
        peft_model = add_lora(model, LoraSettings(rank=rank), seed=0)
        if dtype == "bf16" and not autocast:
            peft_model = peft_model.to(torch.bfloat16)  # LoRA weights in bf16 too ("bf16-true")
        peft_model.train()

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = peft_model(**batch).loss
            loss.backward()

        step()
        started = time.perf_counter()
        step()
        step()
        seconds = (time.perf_counter() - started) / 2
        label = "bf16-mixed (autocast)" if autocast else ("bf16-true" if dtype == "bf16" else "32-true")
        rows.append(f"| {dtype} | {label} | {rank} | {ids.numel() / seconds:.0f} |")
        print(rows[-1], flush=True)
    lines = [
        "# Embedded model: LoRA training tokens/s on this CPU, by precision and rank",
        "",
        f"Command: `python experiments/bench_cpu_precision.py` ({torch.get_num_threads()} CPU threads, "
        "one run, 2 x 400-token batch, forward + backward).",
        "",
        "| weights | Lightning precision equivalent | LoRA rank | tokens/s |",
        "|---|---|---|---|",
        *rows,
    ]
    out = Path(__file__).parent / "results" / "cpu_precision.md"
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
