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

import drawsvg

from ttt.arc.formats import get_format
from ttt.arc.loading import parse_task
from ttt.data.tokenize import SegmentTokenizer
from ttt.model.loading import load_tokenizer
from ttt.outputs import RESULTS, TASK_RECORD, write_text_atomic

WIDTH, HEIGHT, MARGIN = 720, 440, 60
COLOURS = {"ttt": "#1E93FF", "inference": "#F93C31"}  # per series (ARC palette)
MARKS = ["circle", "square", "triangle"]  # per run


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


def plot(rows: list[dict], title: str) -> drawsvg.Drawing:
    """Log-scaled task tokens across, seconds up (linear), one mark per run, one colour per series."""
    import math

    d = drawsvg.Drawing(WIDTH, HEIGHT, font_family="sans-serif", font_size=12)
    d.append(drawsvg.Rectangle(0, 0, WIDTH, HEIGHT, fill="white"))
    xs = [r["tokens"] for r in rows]
    x_lo, x_hi = math.log10(min(xs) * 0.8), math.log10(max(xs) * 1.25)
    y_hi = max(max(r["ttt"] + r["inference"] for r in rows), 1.0) * 1.1

    def px(tokens: float) -> float:
        return MARGIN + (math.log10(tokens) - x_lo) / (x_hi - x_lo) * (WIDTH - 2 * MARGIN)

    def py(seconds: float) -> float:
        return HEIGHT - MARGIN - seconds / y_hi * (HEIGHT - 2 * MARGIN)

    d.append(drawsvg.Line(MARGIN, HEIGHT - MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN, stroke="black"))
    d.append(drawsvg.Line(MARGIN, MARGIN, MARGIN, HEIGHT - MARGIN, stroke="black"))
    for power in range(math.ceil(x_lo), math.floor(x_hi) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10**power
            if x_lo <= math.log10(value) <= x_hi:
                d.append(drawsvg.Line(px(value), HEIGHT - MARGIN, px(value), HEIGHT - MARGIN + 4, stroke="black"))
                d.append(drawsvg.Text(f"{value:g}", 11, px(value), HEIGHT - MARGIN + 16, text_anchor="middle"))
    step = _nice_step(y_hi)
    for k in range(int(y_hi / step) + 1):
        d.append(drawsvg.Line(MARGIN - 4, py(k * step), MARGIN, py(k * step), stroke="black"))
        d.append(drawsvg.Text(f"{k * step:g}", 11, MARGIN - 6, py(k * step) + 4, text_anchor="end"))
    d.append(drawsvg.Text("task size: compact tokens of all its pairs (log scale)", 12, WIDTH / 2, HEIGHT - 18, text_anchor="middle"))
    d.append(drawsvg.Text("seconds per task", 12, 16, HEIGHT / 2, text_anchor="middle", transform=f"rotate(-90 16 {HEIGHT / 2})"))
    d.append(drawsvg.Text(title, 14, WIDTH / 2, 24, text_anchor="middle"))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    for r in rows:
        shape = MARKS[runs.index(r["run"]) % len(MARKS)]
        for series in ("ttt", "inference"):
            if series == "ttt" and not r["ttt"]:
                continue
            _mark(d, shape, px(r["tokens"]), py(r[series]), COLOURS[series], f"{r['run']} {r['task_id']}: {series} {r[series]:.0f} s")
    legend = [(f"{series} seconds", COLOURS[series], "circle") for series in ("ttt", "inference")]
    legend += [(f"run: {run}", "#555555", MARKS[i % len(MARKS)]) for i, run in enumerate(runs)]
    for i, (label, colour, shape) in enumerate(legend):
        y = MARGIN + 4 + 16 * i
        _mark(d, shape, MARGIN + 16, y, colour, label)
        d.append(drawsvg.Text(label, 11, MARGIN + 28, y + 4))
    return d


def _mark(d: drawsvg.Drawing, shape: str, x: float, y: float, colour: str, title: str) -> None:
    if shape == "circle":
        mark = drawsvg.Circle(x, y, 4, fill=colour, fill_opacity=0.7)
    elif shape == "square":
        mark = drawsvg.Rectangle(x - 4, y - 4, 8, 8, fill=colour, fill_opacity=0.7)
    else:
        mark = drawsvg.Lines(x, y - 5, x + 5, y + 4, x - 5, y + 4, close=True, fill=colour, fill_opacity=0.7)
    mark.append_title(title)
    d.append(mark)


def _nice_step(top: float) -> float:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if top / step <= 10:
            return step
    return 10 ** len(str(int(top)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    parser.add_argument("--out", type=Path, required=True, help="the SVG to write (a CSV of the points beside it)")
    parser.add_argument("--title", default="seconds per task against task size")
    parser.add_argument("--budget", type=int, help="the runs' ttt.max_tokens, said in the title")
    args = parser.parse_args()
    runs = {name: Path(path) for name, path in (item.split("=", 1) for item in args.runs)}
    rows = points(runs)
    title = args.title + (f" (ttt.max_tokens={args.budget})" if args.budget else "")
    drawing = plot(rows, title)
    write_text_atomic(args.out, drawing.as_svg())
    header = "run,task_id,level,tokens,ttt_tokens,ttt_seconds,inference_seconds"
    lines = [header] + [f"{r['run']},{r['task_id']},{r['level'] or ''},{r['tokens']},{r['ttt_tokens'] or ''},{r['ttt']},{r['inference']}"
                        for r in rows]  # fmt: skip
    write_text_atomic(args.out.with_suffix(".csv"), "\n".join(lines) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')} ({len(rows)} points)")


if __name__ == "__main__":
    main()
