"""experiments/plot_seconds.py reads each task's own copy from the run directory; given a record
without those copies (experiments/results/...) it says so instead of failing on an empty plot."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_plot_seconds_names_the_directory_that_holds_no_task_copies(tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    (record / "results.json").write_text(json.dumps([{"task_id": "00576224", "seconds": 3.0}]))
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "plot_seconds.py"), f"a={record}", "--out", str(tmp_path / "s.svg")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode != 0
    assert f"no <task_id>/task.json in {record}" in done.stderr
    assert not (tmp_path / "s.svg").exists()
