import json

from ttt.gather import gather, to_csv, to_markdown


def make_run(path, overrides, score):
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (path / "metrics.json").write_text(json.dumps({"num_tasks": 2, "num_scored": 2, "score": score}))


def test_gather_labels_runs_by_overrides_and_writes_both_tables(tmp_path):
    make_run(tmp_path / "0", ["experiment=shared_adapter", "data.task_ids=[a,b]", "hydra.run.dir=x"], 0.5)
    make_run(tmp_path / "1", ["experiment=no_transformations"], 0.25)
    rows = gather([tmp_path])
    assert [(r["run"], r["score"]) for r in rows] == [("experiment=shared_adapter", 0.5), ("experiment=no_transformations", 0.25)]
    markdown = to_markdown(rows)
    assert "| experiment=shared_adapter | 0.500 | - |" in markdown
    assert to_csv(rows).splitlines()[1].startswith("experiment=shared_adapter,0.5,")


def test_runs_with_levels_add_a_score_column_per_level(tmp_path):
    from ttt.wandb_logging import level_metrics

    make_run(tmp_path / "0", ["experiment=full_ttt"], 0.5)
    by_level = {"easy": {"num_tasks": 2, "num_scored": 2, "score": 0.75, "tasks_solved": 1.5}, "hard": {
        "num_tasks": 2, "num_scored": 2, "score": 0.0, "tasks_solved": 0}}  # fmt: skip
    (tmp_path / "1" / ".hydra").mkdir(parents=True)
    (tmp_path / "1" / "metrics.json").write_text(json.dumps({"num_tasks": 4, "score": 0.375, "by_level": by_level}))
    rows = gather([tmp_path])
    assert rows[1]["score/easy"] == 0.75 and rows[1]["tasks_solved/hard"] == 0 and "score/easy" not in rows[0]
    header = to_markdown(rows).splitlines()[0]
    assert header.endswith("| score/easy | tasks_solved/easy | num_scored/easy | score/hard | tasks_solved/hard | num_scored/hard |")
    assert to_csv(rows).splitlines()[0].endswith(",score/hard,tasks_solved/hard,num_scored/hard,dir")
    assert level_metrics({"by_level": by_level})["score/easy"] == 0.75  # W&B's summary keys
