"""Scoring attempts against known outputs, and the Kaggle submission format.

Official (pass@2): a test output is solved if either attempt equals it exactly (shape and every
cell); a task scores the fraction of its test outputs solved. The paper's code counts a task only
if all its test outputs are solved (`all_solved`). Both are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ttt.arc.grid import Grid, from_rows, grid_problem, to_rows


def solved(attempts: Sequence[Grid], truth: Grid) -> bool:
    """Whether any attempt equals the true output exactly."""
    return any(from_rows(a) == truth for a in attempts)


def task_score(attempts_per_test: Sequence[Sequence[Grid]], truths: Sequence[Grid]) -> dict[str, float | bool]:
    """Official score (fraction of test outputs solved) and the all-solved criterion."""
    if len(attempts_per_test) != len(truths):
        raise ValueError(f"{len(attempts_per_test)} attempt lists for {len(truths)} test outputs")
    hits = [solved(a, t) for a, t in zip(attempts_per_test, truths)]
    return {"score": sum(hits) / len(hits), "all_solved": all(hits)}


def submission_entry(attempts_per_test: Sequence[Sequence[Grid]]) -> list[dict[str, list[list[int]]]]:
    """One task's Kaggle entry: per test input, `attempt_1` and `attempt_2` as lists of lists."""
    return [
        {"attempt_1": to_rows(a[0]), "attempt_2": to_rows(a[1])}
        for a in attempts_per_test
    ]


def submission_problems(submission: Any, test_counts: Mapping[str, int]) -> list[str]:
    """What makes `submission` invalid for the Kaggle schema (empty list: valid).

    Every task of `test_counts` ({task_id: number of test inputs}) must have one entry per test
    input with `attempt_1` and `attempt_2`, each a grid of ints 0-9.
    """
    if not isinstance(submission, dict):
        return [f"submission is {type(submission).__name__}, not an object keyed by task id"]
    problems = [f"task {t}: missing" for t in test_counts if t not in submission]
    problems += [f"task {t}: not in the task set" for t in submission if t not in test_counts]
    for task_id, entries in submission.items():
        if task_id not in test_counts:
            continue
        if not isinstance(entries, list) or len(entries) != test_counts[task_id]:
            problems.append(f"task {task_id}: expected {test_counts[task_id]} entries")
            continue
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or set(entry) != {"attempt_1", "attempt_2"}:
                problems.append(f"task {task_id}[{i}]: expected exactly attempt_1 and attempt_2")
                continue
            for name, grid in entry.items():
                problem = grid_problem(grid)
                if problem:
                    problems.append(f"task {task_id}[{i}].{name}: {problem}")
    return problems
