"""Gather runs' `metrics.json` into one table (markdown and CSV), one row per run.

Each run is labelled by its Hydra overrides (`.hydra/overrides.yaml`), so a sweep's table reads
like the paper's ablation figure:

    python -m ttt.gather multirun/2026-11-24/10-00-00 --out ablations   # ablations.md, ablations.csv
    python -m ttt.gather outputs/run_a outputs/run_b                      # prints markdown
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from ttt.outputs import METRICS, RunDir, write_text_atomic
from ttt.selection_rules import SCORE_KEYS

COLUMNS = ["score", *SCORE_KEYS, "all_solved", "oracle", "view_accuracy", "parse_rate", "answers_per_view", "tasks_solved",
           "base_nll", "ttt_nll", "nll_lowered", "num_scored", "num_tasks", "ttt_failed", "ttt_seconds",
           "inference_seconds"]  # fmt: skip


def run_label(run_dir: Path) -> str:
    """The run's command-line overrides, or its folder name."""
    overrides = RunDir(run_dir).overrides
    if overrides.is_file():
        items = [line[2:].strip() for line in overrides.read_text().splitlines() if line.startswith("- ")]
        items = [i for i in items if not i.startswith(("hydra.", "data.task_ids"))]
        if items:
            return " ".join(items)
    return run_dir.name


LEVEL_COLUMNS = ("score", "tasks_solved", "num_scored")  # per level of data.levels: score/<level>, ...


def gather(roots: list[Path]) -> list[dict]:
    """One row per metrics.json found under `roots` (recursively), in path order; runs with levels
    (`data.levels`) add each level's score, tasks solved and tasks scored."""
    rows = []
    for root in roots:
        for path in sorted(root.rglob(METRICS)):
            metrics = json.loads(path.read_text())
            levels = {f"{key}/{level}": scores.get(key) for level, scores in (metrics.get("by_level") or {}).items()
                      for key in LEVEL_COLUMNS}  # fmt: skip
            rows.append({"run": run_label(path.parent), "dir": str(path.parent),
                         **{c: metrics.get(c) for c in COLUMNS}, **levels})  # fmt: skip
    return rows


def columns(rows: list[dict]) -> list[str]:
    """COLUMNS, then every per-level column some run has (levels in first-seen order)."""
    extra = [k for row in rows for k in row if k not in COLUMNS and k not in ("run", "dir")]
    return COLUMNS + list(dict.fromkeys(extra))


def to_markdown(rows: list[dict]) -> str:
    def cell(value):
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    names = columns(rows)
    lines = ["| run | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += ["| " + " | ".join([r["run"]] + [cell(r.get(c)) for c in names]) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["run", *columns(rows), "dir"], restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description="Tabulate runs' metrics.json (markdown + CSV).")
    parser.add_argument("roots", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument("--out", type=Path, help="write OUT.md and OUT.csv instead of printing")
    args = parser.parse_args()
    rows = gather(args.roots)
    if not rows:
        raise SystemExit(f"no metrics.json under {', '.join(map(str, args.roots))}")
    if args.out:
        write_text_atomic(args.out.with_suffix(".md"), to_markdown(rows))
        write_text_atomic(args.out.with_suffix(".csv"), to_csv(rows))
        print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.csv')} ({len(rows)} runs)")
    else:
        print(to_markdown(rows), end="")


if __name__ == "__main__":
    main()
