"""A deadline for a whole run (run.deadline, ttt.deadline): the clock's arithmetic, and whole runs
of the tiny random Llama and of the embedded model that end in time with a complete submission."""

import json
import time

import pytest

from ttt.deadline import RESERVE_MAX_S, RunClock, parse_duration

from fixtures import THREE, read_json, run_in


@pytest.mark.parametrize(
    "text, seconds", [("11h30m", 41400), ("45m", 2700), ("90s", 90), ("1.5h", 5400), ("2m30s", 150), (120, 120)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1d", "h", "10 minutes"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_each_task_gets_its_share_of_the_time_left_and_ttt_its_part():
    start = time.monotonic()
    clock = RunClock(1000, ttt_share=0.6, started=start)
    usable = 1000 - min(RESERVE_MAX_S, 0.02 * 1000)  # 20 s kept for the run's outputs
    clock.begin(tasks_left=4)
    assert clock.until - clock.task_started == pytest.approx((usable - (clock.task_started - start)) / 4, abs=0.01)
    assert clock.ttt_until - clock.task_started == pytest.approx(0.6 * (clock.until - clock.task_started), abs=0.01)
    share = clock.until - clock.task_started
    assert clock.inference_until() == pytest.approx(clock.until, abs=0.01)  # TTT on time: the rest of the share
    clock.until = time.monotonic() - 1  # TTT overran the whole share: inference still has its own part
    assert clock.inference_until() - time.monotonic() == pytest.approx(0.4 * share, abs=0.01)
    clock.begin(tasks_left=4, adapting=False)  # no TTT: inference has the whole share
    assert clock.ttt_seconds() == 0 and clock.inference_until() == pytest.approx(clock.until, abs=0.01)
    assert not clock.expired()
    late = RunClock(100, started=start - 97)  # the run's end comes first
    late.begin(tasks_left=1)
    assert late.inference_until() == pytest.approx(late.end, abs=0.01)
    assert RunClock(10, started=start - 20).expired()


def test_a_run_past_its_deadline_ends_in_time_with_every_task_in_the_submission(tiny_model_dir, tmp_path):
    """~20 s of TTT a task (400 epochs), three tasks, a 6 s deadline: the first task's TTT is
    stopped at its share of the time left, the later ones' samples fitted to theirs at the pace the
    first measured (at 400 epochs none fits: the base model predicts them); every task has two
    attempts per test and says why it was cut."""
    started = time.monotonic()
    metrics = run_in(tmp_path, tiny_model_dir, "run.deadline=6s", "ttt.epochs=400", "run.fit=samples", task_ids=THREE)
    assert time.monotonic() - started < 40  # unbounded: over a minute
    submission = read_json(tmp_path / "submission.json")
    assert sorted(submission) == THREE and all(len(test) == 2 for t in submission.values() for test in t)
    rows = {r["task_id"]: r for r in read_json(tmp_path / "results.json")}
    first, *later = THREE
    assert rows[first]["cut_short"].startswith("deadline: TTT stopped after") and rows[first]["ttt_status"] == "done"
    assert all(rows[t]["cut_short"].startswith("deadline: ") for t in later)
    assert all(rows[t]["ttt_status"] == "cut" or "fitted" in rows[t]["cut_short"] for t in later)
    assert all(rows[t]["predicted"] for t in THREE) and metrics["ttt_failed"] == 0
    assert metrics["cut_short"] == 3 and read_json(tmp_path / "run.json")["status"] == "finished"
    assert rows[THREE[0]]["rss_mib"] > 0 and metrics["peak_rss_mib"] >= rows[THREE[0]]["rss_mib"]


def test_tasks_reached_after_the_deadline_get_the_fallback_attempts(tiny_model_dir, tmp_path):
    """Out of time before the first task: nothing is adapted or decoded, and the submission still
    holds every task (its test input, the fallback), each row saying it was not predicted."""
    metrics = run_in(tmp_path, tiny_model_dir, "run.deadline=0.01s", task_ids=THREE)
    submission = read_json(tmp_path / "submission.json")
    assert sorted(submission) == THREE
    rows = {r["task_id"]: r for r in read_json(tmp_path / "results.json")}
    assert all("not predicted" in rows[t]["cut_short"] and rows[t]["ttt_status"] is None for t in THREE)
    task = read_json(tmp_path / THREE[0] / "task.json")
    assert submission[THREE[0]][0]["attempt_1"] == task["test"][0]["input"]
    assert metrics["cut_short"] == 3


def test_without_a_deadline_nothing_is_cut(tiny_model_dir, tmp_path):
    metrics = run_in(tmp_path, tiny_model_dir, task_ids=THREE[:2])
    assert metrics["cut_short"] == 0
    assert all(r["cut_short"] is None for r in read_json(tmp_path / "results.json"))


@pytest.mark.slow
def test_the_embedded_model_run_with_a_short_deadline_ends_in_time(train_py, tmp_path):
    """The default recipe at ten times its TTT epochs (~7 min of TTT a task on 2 cores, so a task's
    share of 2 minutes is too little on any machine here; at the default's ~40 s the second task
    could finish in what the first left it) on two small tasks with 2 minutes in all."""
    started = time.monotonic()
    result = train_py("data.task_ids=[00576224,66e6c45b]", "ttt.epochs=20", "run.deadline=2m",
                      "trainer.progress_bar=false", f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - started < 2 * 60 + 45  # the interpreter's start and imports come before the clock
    assert sorted(json.loads((tmp_path / "submission.json").read_text())) == ["00576224", "66e6c45b"]
    rows = json.loads((tmp_path / "results.json").read_text())
    assert all(r["cut_short"] for r in rows)


def test_a_per_task_inference_cap_cuts_decoding_and_says_so(tiny_model_dir, tmp_path):
    """inference.max_seconds without a deadline: a cap too short for any view cuts every task's
    decoding (the fallback attempts stand in), and results.json names the cap as the cause."""
    metrics = run_in(tmp_path, tiny_model_dir, "ttt.enabled=false", "inference.max_seconds=0.000001", task_ids=THREE[:2])
    rows = read_json(tmp_path / "results.json")
    assert all(r["cut_short"] == f"inference.max_seconds: {r['num_views']} of {r['num_views']} views cut short" for r in rows)
    assert sorted(read_json(tmp_path / "submission.json")) == THREE[:2] and metrics["cut_short"] == 2


@pytest.mark.parametrize(
    "deadline_left, cap, bound",
    [(100.0, 5.0, "inference.max_seconds"), (5.0, 100.0, "deadline"), (None, 5.0, "inference.max_seconds"), (5.0, None, "deadline")],
)
def test_decoding_stops_at_the_earlier_of_the_deadline_and_the_cap(deadline_left, cap, bound):
    from ttt.inference.predict import InferenceSettings
    from ttt.inference.predictor import Predictor

    clock = None
    if deadline_left is not None:
        clock = RunClock(10_000)
        clock.begin(tasks_left=1, adapting=False)
        clock.until, clock.inference_part = time.monotonic() + deadline_left, 0.0
    predictor = Predictor(None, None, InferenceSettings(max_seconds=cap), "unused", clock=clock)
    until, named = predictor._decoding_until(clock)
    assert named == bound and until - time.monotonic() == pytest.approx(min(c for c in (deadline_left, cap) if c), abs=0.05)
