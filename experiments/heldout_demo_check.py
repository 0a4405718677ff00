"""Would a held-out demonstration tell, at test time, that TTT is about to raise a task's NLL?

A validation signal for early stopping or falling back to the un-adapted model needs no test
output: hold the last demonstration out of the TTT data and measure its NLL before and after. This
checks that signal on training tasks, against what TTT on all demonstrations did to the test NLL:

    python experiments/heldout_demo_check.py write /work/runs/holdout_tasks data=arc_agi_1_dev data=arc_agi_1_dev_mid
    python train.py data=task_dir data.task_dir=/work/runs/holdout_tasks inference.enabled=false seed=1 \\
        hydra.run.dir=/work/runs/holdout_s1                      # the demo is each task's "test" now
    python experiments/heldout_demo_check.py compare /work/runs/holdout_s1 \\
        experiments/results/finetune_long/runs/search2_dev_s1 experiments/results/finetune_long/runs/search2_mid_s1

`write` saves each task of the data configs with its last demonstration as the test example.
`compare` prints, per task, the held-out demonstration's NLL change (from the first run's ttt.json
records) beside the test NLL change (from the other runs' results.json: TTT on all demonstrations,
the same recipe and seed), and how often the two agree in sign.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from ttt.arc.loading import load_tasks
from ttt.arc.task import Task
from ttt.outputs import TTT_RECORD

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"


def write(out_dir: Path, data_overrides: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for override in data_overrides:
        name = override.removeprefix("data=")
        cfg = OmegaConf.merge(OmegaConf.load(CONFIGS / "arc_agi_1.yaml"), OmegaConf.load(CONFIGS / f"{name}.yaml"))
        for task in load_tasks(cfg.dataset, cfg.split, task_ids=list(cfg.task_ids)).tasks:
            held_out = Task(task.id, task.train[:-1], task.train[-1:])
            (out_dir / f"{task.id}.json").write_text(json.dumps(held_out.to_json()))
            print(f"{task.id}: the last demonstration held out, {len(held_out.train)} left")


def compare(holdout_run: Path, full_runs: list[Path]) -> None:
    full = {row["task_id"]: row for run in full_runs for row in json.loads((run / "results.json").read_text())}
    agree = measured = 0
    print("| task | demos left | held-out demo NLL | test NLL, TTT on all demos | agree |")
    print("|---|---|---|---|---|")
    for path in sorted(holdout_run.glob(f"*/{TTT_RECORD}")):
        demo, test = json.loads(path.read_text()), full.get(path.parent.name)
        if test is None or demo.get("ttt_nll") is None or test.get("ttt_nll") is None:
            continue
        left = len(json.loads((path.parent / "task.json").read_text())["train"])
        demo_up, test_up = demo["ttt_nll"] > demo["base_nll"], test["ttt_nll"] > test["base_nll"]
        measured += 1
        agree += demo_up == test_up
        demo_cell = f"{demo['base_nll']:.3f} -> {demo['ttt_nll']:.3f}{' (up)' if demo_up else ''}"
        test_cell = f"{test['base_nll']:.3f} -> {test['ttt_nll']:.3f}{' (up)' if test_up else ''}"
        print(f"| {demo['task_id']} | {left} | {demo_cell} | {test_cell} | {'yes' if demo_up == test_up else 'no'} |")
    print(f"\nthe sign agrees on {agree} of {measured} tasks")


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "write":
        write(Path(rest[0]), rest[1:])
    elif command == "compare":
        compare(Path(rest[0]), [Path(p) for p in rest[1:]])
    else:
        sys.exit(f"unknown command {command!r}: write | compare")
