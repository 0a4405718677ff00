"""Per-task comparison of runs on the same tasks: held-out NLL, parse rate, oracle and pass@2.

    python experiments/compare_runs.py no_ttt=/tmp/eval_nottt ttt_s0=/tmp/eval_ttt_s0 ttt_s1=/tmp/eval_ttt_s1

Each argument is NAME=RUN_DIR (a run's output directory with results.json and metrics.json).
Prints a markdown table, one row per task, then one summary row per run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def main(args: list[str]) -> None:
    runs = {}
    for arg in args:
        name, _, path = arg.partition("=")
        rows = json.loads((Path(path) / "results.json").read_text())
        runs[name] = ({r["task_id"]: r for r in rows}, json.loads((Path(path) / "metrics.json").read_text()))
    tasks = sorted({t for rows, _ in runs.values() for t in rows})
    head = ["task"] + [f"{n} {c}" for n in runs for c in ("NLL", "parsed", "oracle", "pass@2")]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for task in tasks:
        cells = [task]
        for rows, _ in runs.values():
            r = rows.get(task, {})
            nll = r.get("ttt_nll") if r.get("ttt_nll") is not None else r.get("base_nll")
            cells += [cell(nll, ".3f"), cell(r.get("parse_rate")), cell(r.get("oracle")), cell(r.get("score"))]
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines) + "\n")
    print("| run | tasks | pass@2 | all solved | oracle | parsed | answers/view | NLL before | NLL after | NLL lowered "
          "| TTT tokens/task | TTT s/task | infer s/task |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (rows, m) in runs.items():
        n = m["num_tasks"]
        print(
            f"| {name} | {n} | {cell(m['tasks_solved'], '.0f')}/{m['num_scored']} | {cell(m['all_solved'], '.3f')} | "
            f"{cell(m['oracle'], '.3f')} | {cell(m.get('parse_rate'), '.3f')} | {cell(m.get('answers_per_view'))} | "
            f"{cell(m.get('base_nll'), '.3f')} | {cell(m.get('ttt_nll'), '.3f')} | "
            f"{m.get('nll_lowered', 0)}/{m.get('nll_measured', 0)} | {cell(m.get('ttt_tokens', 0) / n, '.0f')} | "
            f"{cell(m['ttt_seconds'] / n, '.1f')} | {cell(m['inference_seconds'] / n, '.1f')} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
