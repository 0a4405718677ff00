"""Seconds per task against the task's size, one SVG scatter plot per call: TTT seconds and inference
seconds of every task of one or more run directories, against the task's compact tokens (all its
demonstrations and test pairs, as `experiments/small_tasks.py` counts them).

    python experiments/plot_seconds.py ttt=/tmp/paper80_ttt no_ttt=/tmp/paper80_nottt \
        --out experiments/results/long_tasks/seconds_per_task.svg --budget 8000

`--budget` (the runs' `ttt.max_tokens`) goes into the title. Also writes the points as CSV beside
the SVG (with each task's TTT tokens, one epoch's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from svg_axes import MARKS, Axes

from ttt.arc.formats import get_format
from ttt.arc.loading import parse_task
from ttt.data.tokenize import SegmentTokenizer
from ttt.model.loading import load_tokenizer
from ttt.outputs import RESULTS, TASK_RECORD, write_text_atomic

COLOURS = {"ttt": "#1E93FF", "inference": "#F93C31"}  # per series (ARC palette)


def task_tokens(run_dir: Path, task_id: str, encoder: SegmentTokenizer) -> int:
    """Compact tokens of the whole task (every test pair), from the run's own copy of it."""
    task = parse_task(str(run_dir / task_id / TASK_RECORD), task_id, json.loads((run_dir / task_id / TASK_RECORD).read_text()))
    compact = get_format("compact")
    return sum(len(encoder.encode(compact.render(task.train, t.input, t.output)).input_ids) for t in task.test)


def points(runs: dict[str, Path]) -> list[dict]:
    encoder = SegmentTokenizer(load_tokenizer())
    rows = []
    for name, run_dir in runs.items():
        for row in json.loads((run_dir / RESULTS).read_text()):
            if not (run_dir / row["task_id"] / TASK_RECORD).is_file():  # its folder was removed (to redo it)
                print(f"{run_dir}: {row['task_id']} left out: no {row['task_id']}/{TASK_RECORD}", file=sys.stderr)
                continue
            rows.append({
                "run": name, "task_id": row["task_id"], "level": row.get("level"),
                "tokens": task_tokens(run_dir, row["task_id"], encoder), "ttt_tokens": row.get("ttt_tokens"),
                "ttt": row.get("ttt_seconds") or 0.0, "inference": row.get("seconds") or 0.0,
            })  # fmt: skip
    return rows


def plot(rows: list[dict], title: str) -> Axes:
    """Log-scaled task tokens across, seconds up (linear), one mark per run, one colour per series."""
    xs = [r["tokens"] for r in rows]
    y_hi = max(max(r["ttt"] + r["inference"] for r in rows), 1.0) * 1.1
    axes = Axes(title, "task size: compact tokens of all its pairs (log scale)", "seconds per task",
                (min(xs) * 0.8, max(xs) * 1.25), (0.0, y_hi), x_log=True)  # fmt: skip
    runs = list(dict.fromkeys(r["run"] for r in rows))
    for r in rows:
        shape = MARKS[runs.index(r["run"]) % len(MARKS)]
        for series in ("ttt", "inference"):
            if series == "ttt" and not r["ttt"]:
                continue
            axes.mark(shape, r["tokens"], r[series], COLOURS[series], f"{r['run']} {r['task_id']}: {series} {r[series]:.0f} s")
    legend = [(f"{series} seconds", COLOURS[series], "circle") for series in ("ttt", "inference")]
    legend += [(f"run: {run}", "#555555", MARKS[i % len(MARKS)]) for i, run in enumerate(runs)]
    axes.legend(legend)
    return axes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    parser.add_argument("--out", type=Path, required=True, help="the SVG to write (a CSV of the points beside it)")
    parser.add_argument("--title", default="seconds per task against task size")
    parser.add_argument("--budget", type=int, help="the runs' ttt.max_tokens, said in the title")
    args = parser.parse_args()
    runs = {name: Path(path) for name, path in (item.split("=", 1) for item in args.runs)}
    rows = points(runs)
    if not rows:
        sys.exit(f"no task to plot: no <task_id>/{TASK_RECORD} in {', '.join(map(str, runs.values()))} (pass the run's own directory, not its record)")
    title = args.title + (f" (ttt.max_tokens={args.budget})" if args.budget else "")
    write_text_atomic(args.out, plot(rows, title).svg())
    header = "run,task_id,level,tokens,ttt_tokens,ttt_seconds,inference_seconds"
    lines = [header] + [f"{r['run']},{r['task_id']},{r['level'] or ''},{r['tokens']},{r['ttt_tokens'] or ''},{r['ttt']},{r['inference']}"
                        for r in rows]  # fmt: skip
    write_text_atomic(args.out.with_suffix(".csv"), "\n".join(lines) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')} ({len(rows)} points)")


if __name__ == "__main__":
    main()
