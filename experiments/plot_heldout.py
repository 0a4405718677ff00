"""Held-out NLL curves of fine-tuning runs, one SVG line chart per call: the mean NLL per answer
token over the 32 held-out training tasks (configs/finetune/holdout_32.yaml; solid) and over the
second development set (configs/data/arc_agi_1_dev_mid.yaml; dashed), against training hours or
optimizer steps or tokens trained, one colour per run. Reads each run's finetune.json (`heldout_curve`).

    python experiments/plot_heldout.py r16=/work/runs/ft_r16 r64=/work/runs/ft_r64 full=/work/runs/ft_full \
        --out experiments/results/finetune_long/heldout.svg [--x step|tokens]

A record written before the curve kept each task's NLL (the shipped embedded-arc run) has the mean
over its own held-out tasks only (the 32: no dev_mid line) and no seconds per point: its hours are
spread evenly over its fit_seconds, and the legend says so; records before issue 34 kept no
tokens per point (`--x tokens` leaves them out). Also writes the points as CSV beside the SVG.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml
from svg_axes import Axes

from ttt.outputs import FINETUNE_RECORD, write_text_atomic

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
COLOURS = ("#1E93FF", "#F93C31", "#4FCC30", "#E53AA3", "#FF851B", "#87D8F1", "#921231", "#555555")  # ARC palette


def subsets() -> dict[str, list[str]]:
    """The task ids each line averages over: the 32 held-out tasks and the second development set."""
    holdout = yaml.safe_load((CONFIGS / "finetune" / "holdout_32.yaml").read_text())["holdout_task_ids"]
    dev_mid = yaml.safe_load((CONFIGS / "data" / "arc_agi_1_dev_mid.yaml").read_text())["task_ids"]
    return {"holdout 32": holdout, "dev_mid 12": dev_mid}


def curve_points(run: str, record: dict, groups: dict[str, list[str]]) -> list[dict]:
    """One row per (curve point, subset) the record can give: run, subset, step, hours, nll."""
    rows, curve = [], record["heldout_curve"]
    last_step = max(curve[-1]["step"], 1)
    for point in curve:
        hours = point["seconds"] / 3600 if "seconds" in point else record["fit_seconds"] * point["step"] / last_step / 3600
        for subset, ids in groups.items():
            if "tasks" in point:
                if not set(ids) <= point["tasks"].keys():
                    continue
                nll = statistics.fmean(point["tasks"][t] for t in ids)
            elif set(record["holdout_task_ids"]) == set(ids):  # an old record: its mean is over exactly these
                nll = point["nll"]
            else:
                continue
            rows.append({"run": run, "subset": subset, "step": point["step"], "hours": hours, "nll": nll,
                         "tokens": point.get("tokens"), "interpolated": "seconds" not in point})  # fmt: skip
    return rows


def plot(rows: list[dict], x: str, title: str) -> Axes:
    rows = [r for r in rows if r[x] is not None]
    xs, ys = [r[x] for r in rows], [r["nll"] for r in rows]
    pad = (max(ys) - min(ys)) * 0.1 or 0.05
    label = {"hours": "training hours (held-out measurements left out)", "step": "optimizer steps",
             "tokens": "tokens trained"}[x]
    axes = Axes(title, label, "held-out NLL per answer token", (0.0, max(xs) * 1.05), (min(ys) - pad, max(ys) + pad))
    runs, groups = list(dict.fromkeys(r["run"] for r in rows)), list(dict.fromkeys(r["subset"] for r in rows))
    legend = []
    for i, run in enumerate(runs):
        colour = COLOURS[i % len(COLOURS)]
        for j, subset in enumerate(groups):
            line = [r for r in rows if r["run"] == run and r["subset"] == subset]
            if not line:
                continue
            axes.line([(r[x], r["nll"]) for r in line], colour, dashed=j > 0)
            for r in line:
                axes.mark("circle", r[x], r["nll"], colour, f"{run}, {subset}: step {r['step']}, {r['hours']:.2f} h, {r['tokens']} tokens, NLL {r['nll']:.4f}")
            note = ", hours spread evenly" if x == "hours" and line[0]["interpolated"] else ""
            legend.append((f"{run}, {subset}{note}" + (" (dashed)" if j else ""), colour, "circle"))
    axes.legend(legend, right=True)
    return axes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR (a fine-tuning output dir holding finetune.json)")
    parser.add_argument("--out", type=Path, required=True, help="the SVG to write (a CSV of the points beside it)")
    parser.add_argument("--x", choices=("hours", "step", "tokens"), default="hours")
    parser.add_argument("--title", default="held-out NLL while fine-tuning the embedded model")
    args = parser.parse_args()
    groups, rows = subsets(), []
    for name, path in (item.split("=", 1) for item in args.runs):
        record_path = Path(path) / FINETUNE_RECORD if Path(path).is_dir() else Path(path)
        rows += curve_points(name, json.loads(record_path.read_text()), groups)
    write_text_atomic(args.out, plot(rows, args.x, args.title).svg())
    lines = ["run,subset,step,hours,tokens,nll"] + [
        f"{r['run']},{r['subset']},{r['step']},{r['hours']:.4f},{r['tokens'] if r['tokens'] is not None else ''},{r['nll']:.4f}" for r in rows
    ]
    write_text_atomic(args.out.with_suffix(".csv"), "\n".join(lines) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')} ({len(rows)} points)")


if __name__ == "__main__":
    main()
