"""Real Hydra multiruns of train.py on a tiny random Llama saved to a local directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from wandb_files import history_and_summary, logged_table

from ttt.grid_drawing import grid_svg

ROOT = Path(__file__).resolve().parents[1]
TASKS = '["66e6c45b","00576224","be03b35f"]'


def train(*overrides, cwd=ROOT):
    result = subprocess.run(
        [sys.executable, "train.py", *overrides], cwd=cwd, capture_output=True, text=True, timeout=900,
        env={**__import__("os").environ, "WANDB_SILENT": "true"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def tiny(model_dir):
    return [
        f"model.name_or_path={model_dir}", "model.adapter=null", "model.format=compact", "ttt.max_examples=2", "ttt.epochs=1",
        "ttt.lora.rank=4", "data.max_seq_len=512", "inference.max_new_tokens=30",
        "inference.transforms=[identity,rot90]", "trainer.progress_bar=false", f"data.task_ids={TASKS}",
    ]  # fmt: skip


def test_a_two_job_multirun_logs_two_separate_offline_wandb_runs(tiny_model_dir, tmp_path):
    train("-m", "seed=0,1", "logger=wandb", "logger.mode=offline", f"hydra.sweep.dir={tmp_path}", *tiny(tiny_model_dir))
    runs = [sorted((tmp_path / job / "wandb").glob("offline-run-*/run-*.wandb")) for job in ("0", "1")]
    assert [len(r) for r in runs] == [1, 1] and runs[0][0].name != runs[1][0].name
    for (run_file,), job in zip(runs, ("0", "1")):
        history, summary = history_and_summary(run_file)
        assert any("ttt/66e6c45b/loss" in row for row in history)  # a per-task loss curve
        assert summary["num_tasks"] == 3 and "score" in summary
        assert summary["results/_type"] == "table-file" and summary["results/nrows"] == 3
        assert list(run_file.parent.glob("files/media/table/results_*.table.json"))
        metrics = json.loads((tmp_path / job / "metrics.json").read_text())
        assert metrics["score"] == summary["score"]
        # the table's pictures are report.html's: attempt 1 of the first task, same SVG in both
        columns, rows = logged_table(run_file, "results")
        first = rows[0][columns.index("attempt_1")]
        results = json.loads((tmp_path / job / "results.json").read_text())
        truth = json.loads((tmp_path / job / results[0]["task_id"] / "task.json").read_text())["test"][0]["output"]
        picture = grid_svg(results[0]["attempts"][0]["attempt_1"], truth, label="attempt 1")
        assert picture in first and picture in (tmp_path / job / "report.html").read_text()
        assert (run_file.parent / "files" / "report.html").read_text() == (tmp_path / job / "report.html").read_text()
    # each job wrote its report.html; the Hydra callback linked them when the multirun ended
    assert all((tmp_path / job / "report.html").is_file() for job in ("0", "1"))
    index = (tmp_path / "index.html").read_text()
    assert 'href="0/report.html"' in index and 'href="1/report.html"' in index and "seed=1" in index


@pytest.mark.parametrize(
    "launcher",
    [
        "basic",
        # submitit's local executor: the machinery of hydra/launcher=submitit_slurm (pickled jobs,
        # one process per shard) without a SLURM cluster
        pytest.param("submitit_local", marks=pytest.mark.slow),
    ],
)
def test_two_shards_merge_into_the_single_job_submission(launcher, tiny_model_dir, tmp_path):
    train("-m", f"hydra/launcher={launcher}", "data.shard=0,1", "data.num_shards=2",
          f"hydra.sweep.dir={tmp_path / 'shards'}", *tiny(tiny_model_dir))  # fmt: skip
    train(f"hydra.run.dir={tmp_path / 'single'}", *tiny(tiny_model_dir))
    shards = [json.loads((tmp_path / "shards" / j / "submission.json").read_text()) for j in ("0", "1")]
    assert sorted(map(len, shards)) == [1, 2]  # 3 tasks dealt over 2 jobs
    merged = subprocess.run(
        [sys.executable, "-m", "ttt.report", "merge", tmp_path / "shards" / "0", tmp_path / "shards" / "1",
         "--out", tmp_path / "merged"], cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert f"report: {tmp_path / 'merged' / 'report.html'}" in merged.stdout
    alone = subprocess.run(
        [sys.executable, "-m", "ttt.report", "merge", tmp_path / "shards" / "0", "--out", tmp_path / "alone"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert alone.returncode != 0 and "shard(s) [1] of 2 not given" in alone.stderr and "--allow-partial" in alone.stderr
    single = (tmp_path / "single" / "submission.json").read_text()
    assert (tmp_path / "merged" / "submission.json").read_text() == single
    single_metrics = json.loads((tmp_path / "single" / "metrics.json").read_text())
    merged_metrics = json.loads((tmp_path / "merged" / "metrics.json").read_text())
    assert {k: merged_metrics[k] for k in ("num_tasks", "score", "oracle")} == {
        k: single_metrics[k] for k in ("num_tasks", "score", "oracle")
    }
    merged_page, single_page = ((tmp_path / d / "report.html").read_text() for d in ("merged", "single"))
    for task_id in json.loads(TASKS):  # the merged run's page draws every task as the single run's does
        assert merged_page.count(f'data-task="{task_id}"') == single_page.count(f'data-task="{task_id}"') == 2
    grids = lambda page: page.count('class="grid"')  # noqa: E731
    assert grids(merged_page) == grids(single_page) > 0
