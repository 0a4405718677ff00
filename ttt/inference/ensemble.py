"""Combine TTT with a program-synthesis system (the paper's 53.0% -> 61.9% ensemble rule).

Program file (submission-like): `{task_id: [{"attempt_1": grid, "attempt_2": grid,
"unique_program": bool}, ...]}`, one entry per test input; `unique_program` says whether exactly
one program covered all the demonstrations. Per test input:
1. the program's first answer is among TTT's attempts -> they agree: TTT's attempts;
2. else a unique program -> trust it: [program attempt_1, TTT attempt_1];
3. else -> trust TTT: TTT's attempts.
Tasks or test inputs the program file lacks keep TTT's attempts.

    python -m ttt.inference.ensemble --ttt submission.json --programs programs.json --out combined.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ttt.outputs import write_text_atomic


def combine_entry(ttt: dict, program: dict | None) -> tuple[dict, str]:
    """One test input's combined attempts and which rule decided them."""
    if program is None or program.get("attempt_1") is None:
        return ttt, "ttt_only"
    if program["attempt_1"] in (ttt["attempt_1"], ttt["attempt_2"]):
        return ttt, "agree"
    if program.get("unique_program"):
        return {"attempt_1": program["attempt_1"], "attempt_2": ttt["attempt_1"]}, "program"
    return ttt, "ttt"


def combine(ttt_submission: dict, programs: dict) -> tuple[dict, dict[str, int]]:
    """The combined submission and how often each rule decided."""
    combined, counts = {}, {"agree": 0, "program": 0, "ttt": 0, "ttt_only": 0}
    for task_id, entries in ttt_submission.items():
        program_entries = programs.get(task_id, [])
        combined[task_id] = []
        for i, entry in enumerate(entries):
            chosen, rule = combine_entry(entry, program_entries[i] if i < len(program_entries) else None)
            combined[task_id].append(chosen)
            counts[rule] += 1
    return combined, counts


def main() -> None:
    parser = argparse.ArgumentParser(description="Combine a TTT submission with program-synthesis outputs.")
    parser.add_argument("--ttt", required=True, type=Path, help="TTT submission.json")
    parser.add_argument("--programs", required=True, type=Path, help="program outputs with unique_program flags")
    parser.add_argument("--out", required=True, type=Path, help="where to write the combined submission")
    args = parser.parse_args()
    combined, counts = combine(json.loads(args.ttt.read_text()), json.loads(args.programs.read_text()))
    write_text_atomic(args.out, json.dumps(combined))
    print(f"wrote {args.out}: {counts}")


if __name__ == "__main__":
    main()
