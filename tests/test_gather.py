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
