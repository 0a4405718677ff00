"""The package's import graph: no cycle, no arrow from a lower layer to a higher one
(`experiments/import_graph.py` names the layers), and the run-directory readers load no torch."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "experiments" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_cycle_and_no_upward_import():
    assert import_graph().problems(ROOT / "ttt") == []


def test_the_check_finds_a_cycle_an_upward_import_and_a_module_in_no_layer(tmp_path):
    package = tmp_path / "ttt"
    (package / "inference").mkdir(parents=True)
    for name in ("__init__.py", "inference/__init__.py"):
        (package / name).write_text("")
    (package / "knobs.py").write_text("from ttt.inference.voting import vote\n")  # base -> inference
    (package / "inference" / "voting.py").write_text("from ttt.inference.paper import paper\nvote = 1\n")
    (package / "inference" / "paper.py").write_text("def paper():\n    from ttt.inference import voting\n")
    (package / "stray.py").write_text("")
    assert import_graph().problems(package) == [
        "cycle: ttt.inference.paper <-> ttt.inference.voting",
        "in no layer: ttt.stray",
        "upward: ttt.knobs (base) imports ttt.inference.voting (inference)",
    ]


def test_reading_a_run_directory_loads_no_torch():
    """`python -m ttt.report`, `ttt.html_report` and `ttt.gather` merge and draw JSON files: they must
    start in a second on a machine where torch is slow to import (or absent)."""
    code = "import sys, ttt.report, ttt.html_report, ttt.gather; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'transformers', 'peft'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
