"""Per-task comparison of runs on the same tasks: held-out NLL, parse rate, oracle and pass@2.

    python experiments/compare_runs.py no_ttt=/tmp/eval_nottt ttt_s0=/tmp/eval_ttt_s0 ttt_s1=/tmp/eval_ttt_s1

Each argument is NAME=RUN_DIR (a run's output directory with results.json and metrics.json).
Prints a markdown table, one row per task, then one summary row per run, then the tasks each
selection rule would have solved (vote, poe, nvarc, confidence; `-` where a run did not score it). `--by-level` prints
instead one row per run and level (`data.levels`, e.g. data=arc_agi_1_paper80) and the total,
computed from results.json over the tasks every run has (runs stopped part way compare fairly).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ttt.selection_rules import SELECTIONS as RULES, score_key


def cell(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def by_level(runs: dict) -> None:
    """Per run, per level and in total over the tasks all runs have: solved, candidates, parse, NLL, cost."""
    common = set.intersection(*(set(rows) for rows, _ in runs.values()))
    print(f"{len(common)} tasks in every run\n")
    print("| run | level | tasks | pass@2 | solved | right answer among candidates | parsed | held-out NLL "
          "| NLL lowered | TTT tokens/task | TTT s/task | infer s/task |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (rows, metrics) in runs.items():
        seen = list(dict.fromkeys(rows[t].get("level") or "-" for t in sorted(common)))
        levels = [level for level in metrics.get("by_level") or {} if level in seen] or seen  # the config's order
        for level in [*levels, "total"]:
            group = [rows[t] for t in sorted(common) if level == "total" or (rows[t].get("level") or "-") == level]
            solved = [r["task_id"] for r in group if r.get("score")]
            nll = [r["ttt_nll"] if r.get("ttt_nll") is not None else r.get("base_nll") for r in group]
            lowered = [r for r in group if r.get("nll_drop") is not None]
            print(
                f"| {name} | {level} | {len(group)} | {sum(r.get('score') or 0 for r in group):g} | {' '.join(solved) or '-'} | "
                f"{sum(bool(r.get('oracle')) for r in group)} | {cell(mean(r.get('parse_rate') for r in group))} | "
                f"{cell(mean(nll), '.3f')} | {sum(r['nll_drop'] > 0 for r in lowered)}/{len(lowered)} | "
                f"{cell(mean(r.get('ttt_tokens') for r in group), '.0f')} | {cell(mean(r.get('ttt_seconds') for r in group), '.1f')} | "
                f"{cell(mean(r.get('seconds') for r in group), '.1f')} |"
            )


def main(args: list[str]) -> None:
    levelled = "--by-level" in args
    args = [a for a in args if a != "--by-level"]
    runs = {}
    for arg in args:
        name, _, path = arg.partition("=")
        rows = json.loads((Path(path) / "results.json").read_text())
        runs[name] = ({r["task_id"]: r for r in rows}, json.loads((Path(path) / "metrics.json").read_text()))
    if levelled:
        return by_level(runs)
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
    print("\n| run | " + " | ".join(f"pass@2 by {rule}" for rule in RULES) + " |")
    print("|---|" + "---|" * len(RULES))
    for name, (rows, _) in runs.items():
        print(f"| {name} | " + " | ".join(solved_by(rows.values(), rule) for rule in RULES) + " |")


def solved_by(rows, rule: str) -> str:
    """How many tasks, and which, the attempts of one selection rule solve."""
    key = score_key(rule)
    scored = [r for r in rows if r.get(key) is not None]
    solved = [r["task_id"] for r in scored if r[key]]
    return f"{sum(r[key] for r in scored):g}/{len(scored)} {' '.join(solved)}".strip() if scored else "-"


if __name__ == "__main__":
    main(sys.argv[1:])
