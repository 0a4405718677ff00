import json
import subprocess
import sys

from ttt.inference.ensemble import combine

A, B, C, D = [[1]], [[2]], [[3]], [[4]]


def test_the_three_rules_and_missing_entries():
    ttt = {"t1": [{"attempt_1": A, "attempt_2": B}, {"attempt_1": A, "attempt_2": B}],
           "t2": [{"attempt_1": C, "attempt_2": D}], "t3": [{"attempt_1": A, "attempt_2": D}]}  # fmt: skip
    programs = {
        "t1": [{"attempt_1": B, "attempt_2": C, "unique_program": False},  # agrees with TTT's 2nd attempt
               {"attempt_1": C, "attempt_2": D, "unique_program": True}],  # unique program: trusted
        "t2": [{"attempt_1": A, "attempt_2": B, "unique_program": False}],  # disagree, not unique: TTT
    }  # fmt: skip
    combined, counts = combine(ttt, programs)
    assert combined == {
        "t1": [{"attempt_1": A, "attempt_2": B}, {"attempt_1": C, "attempt_2": A}],
        "t2": [{"attempt_1": C, "attempt_2": D}],
        "t3": [{"attempt_1": A, "attempt_2": D}],
    }
    assert counts == {"agree": 1, "program": 1, "ttt": 1, "ttt_only": 1}


def test_command_line(tmp_path):
    (tmp_path / "ttt.json").write_text(json.dumps({"t": [{"attempt_1": A, "attempt_2": B}]}))
    (tmp_path / "p.json").write_text(json.dumps({"t": [{"attempt_1": C, "attempt_2": C, "unique_program": True}]}))
    subprocess.run(
        [sys.executable, "-m", "ttt.inference.ensemble", "--ttt", tmp_path / "ttt.json",
         "--programs", tmp_path / "p.json", "--out", tmp_path / "out.json"], check=True,
    )  # fmt: skip
    assert json.loads((tmp_path / "out.json").read_text()) == {"t": [{"attempt_1": C, "attempt_2": A}]}
