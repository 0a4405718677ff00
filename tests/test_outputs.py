"""RunDir: the one map of a run directory that every reader and writer uses."""

from ttt.outputs import SHARED, RunDir, write_json_atomic


def test_task_ids_come_in_the_given_order_then_the_task_folders_found(tmp_path):
    run = RunDir(tmp_path)
    for task_id in ("b", "a", "c"):
        write_json_atomic(run.task(task_id), {})
    write_json_atomic(run.ttt_record(SHARED), {})  # the shared adapter's folder is not a task
    (tmp_path / "logs").mkdir()
    (tmp_path / "notes").mkdir()  # a folder without a task's records is not one either
    assert run.task_ids(["c"]) == ["c", "a", "b"] and RunDir(tmp_path / "absent").task_ids() == []


def test_a_task_is_adapted_by_its_own_record_else_the_shared_one(tmp_path):
    run = RunDir(tmp_path)
    assert run.adaptation_of("a") == tmp_path / "a" / "ttt.json"  # neither exists: its own
    write_json_atomic(run.ttt_record(SHARED), {})
    assert run.adaptation_of("a") == tmp_path / SHARED / "ttt.json"
    write_json_atomic(run.ttt_record("a"), {})
    assert run.adaptation_of("a") == tmp_path / "a" / "ttt.json"
