"""Would a held-out demonstration tell, at test time, that TTT is about to raise a task's NLL?

A validation signal for early stopping or falling back to the un-adapted model needs no test
output: hold the last demonstration out of the TTT data and measure its NLL before and after. This
checks that signal on training tasks, against what TTT on all demonstrations did to the test NLL:

    python experiments/heldout_demo_check.py write /work/runs/holdout_tasks data=arc_agi_1_dev data=arc_agi_1_dev_mid
    python train.py data=task_dir data.task_dir=/work/runs/holdout_tasks inference.enabled=false seed=1 \\
        hydra.run.dir=/work/runs/holdout_s1                      # the demo is each task's "test" now
    python experiments/heldout_demo_check.py compare /work/runs/holdout_s1 \\
        experiments/results/finetune_long/runs/search2_dev_s1 experiments/results/finetune_long/runs/search2_mid_s1

`write` saves each task of the given data sets (one train.py override each, selected as a run
selects them) with its last demonstration as the test example.
`compare` prints, per task, the held-out demonstration's NLL change (from the first run's ttt.json
records) beside the test NLL change (from the other runs' results.json: TTT on all demonstrations,
the same recipe and seed), and how often the two agree in sign.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from ttt.adapt import read_record
from ttt.arc.task import Task
from ttt.outputs import TASK_RECORD, TTT_RECORD
from ttt.run import select_tasks
from ttt.settings import RunSettings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(out_dir: Path, data_overrides: list[str]) -> None:
    """Each data set's tasks (one train.py override each, e.g. data=arc_agi_1_dev), as a run selects them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        selections = [RunSettings.from_config(compose("train", overrides=[o])) for o in data_overrides]
    for settings in selections:
        for task in select_tasks(settings):
            held_out = Task(task.id, task.train[:-1], task.train[-1:])
            (out_dir / f"{task.id}.json").write_text(json.dumps(held_out.to_json()))
            print(f"{task.id}: the last demonstration held out, {len(held_out.train)} left")


def compare(holdout_run: Path, full_runs: list[Path]) -> None:
    full = {row["task_id"]: row for run in full_runs for row in json.loads((run / "results.json").read_text())}
    agree = measured = 0
    print("| task | demos left | held-out demo NLL | test NLL, TTT on all demos | agree |")
    print("|---|---|---|---|---|")
    for path in sorted(holdout_run.glob(f"*/{TTT_RECORD}")):
        demo, test = read_record(holdout_run, path.parent.name), full.get(path.parent.name)
        if test is None or demo.ttt_nll is None or test.get("ttt_nll") is None:
            continue
        left = len(json.loads((path.parent / TASK_RECORD).read_text())["train"])
        demo_up, test_up = demo.ttt_nll > demo.base_nll, test["ttt_nll"] > test["base_nll"]
        measured += 1
        agree += demo_up == test_up
        demo_cell = f"{demo.base_nll:.3f} -> {demo.ttt_nll:.3f}{' (up)' if demo_up else ''}"
        test_cell = f"{test['base_nll']:.3f} -> {test['ttt_nll']:.3f}{' (up)' if test_up else ''}"
        print(f"| {demo.task_id} | {left} | {demo_cell} | {test_cell} | {'yes' if demo_up == test_up else 'no'} |")
    print(f"\nthe sign agrees on {agree} of {measured} tasks")


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "write":
        write(Path(rest[0]), rest[1:])
    elif command == "compare":
        compare(Path(rest[0]), [Path(p) for p in rest[1:]])
    else:
        sys.exit(f"unknown command {command!r}: write | compare")
