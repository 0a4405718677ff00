"""Tokens an epoch of each task's TTT samples, without and with `ttt.max_tokens` budgets (no training).

    python experiments/ttt_budget_tokens.py data=arc_agi_1_paper80 --budgets 4000 8000
    # one line per task: id, then (samples, tokens) with no budget and at each budget; then the
    # median, min and max per budget

Any `train.py` override selects the tasks and the TTT data settings (`model=...`, `data=...`);
the samples are the ones the run's data module would build for seed `seed`.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

from hydra import compose, initialize_config_dir

from ttt.data.datamodule import TTTDataModule
from ttt.model.loading import load_tokenizer
from ttt.run import select_tasks
from ttt.settings import RunSettings

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. data=arc_agi_1_dev_mid")
    parser.add_argument("--budgets", type=int, nargs="+", default=[4000, 8000])
    args = parser.parse_args()

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        settings = RunSettings.from_config(compose("train", overrides=args.overrides))
    tokenizer = load_tokenizer()
    budgets = [None, *args.budgets]
    rows = []
    for task in select_tasks(settings):
        counts = []
        for budget in budgets:
            config = dataclasses.replace(settings.ttt.data(settings.seed), max_tokens=budget)
            datamodule = TTTDataModule(
                [task], tokenizer, settings.model.format, config, settings.ttt.loss,
                settings.data.max_seq_len, settings.ttt.batch_size,
            )  # fmt: skip
            datamodule.setup("fit")
            counts.append((datamodule.stats[0].num_examples, datamodule.stats[0].num_tokens))
        rows.append(counts)
        print(task.id, " ".join(f"{n}/{t}" for n, t in counts), flush=True)
    for k, budget in enumerate(budgets):
        tokens = [r[k][1] for r in rows]
        samples = [r[k][0] for r in rows]
        print(f"budget {budget or 'none'}: tokens median {statistics.median(tokens):.0f}, min {min(tokens)}, "
              f"max {max(tokens)}; samples median {statistics.median(samples):.1f}, min {min(samples)}, max {max(samples)}")  # fmt: skip


if __name__ == "__main__":
    main()
