import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_py_without_ttt_loads_the_model_and_says_what_is_missing(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "data.task_ids=[00576224]", "ttt.enabled=false", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"1 tasks selected (0 skipped as invalid); output: {tmp_path}" in result.stdout
    assert "ttt.enabled=false: no adaptation" in result.stdout
    assert (tmp_path / ".hydra" / "config.yaml").is_file()


def test_train_py_names_a_missing_task_id(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "data.task_ids=[nope]", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "data.task_ids: no task 'nope'" in result.stderr
