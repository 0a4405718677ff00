"""Runs that fail say so, resumes and merges check what they combine, a kill loses nothing:
whole runs of a tiny random Llama (saved as a local model directory) on real ARC tasks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ttt.report import MergeError, merge
from ttt.resume import ResumeMismatch
from ttt.run import RunFailed, run

from fixtures import RUN_TASKS, THREE, compose_config, read_json, run_in, tiny_run

ROOT = Path(__file__).resolve().parents[1]
SMALL = RUN_TASKS
BIG = "009d5c81"  # 14x14 grids: no TTT sample fits 512 tokens


def test_ttt_failing_on_every_task_fails_the_run_after_writing_what_it_has(tiny_model_dir, tmp_path):
    with pytest.raises(RunFailed, match="TTT failed on all 1 tasks"):
        run_in(tmp_path, tiny_model_dir, task_ids=[BIG])
    assert read_json(tmp_path / "run.json")["status"] == "failed"
    metrics = read_json(tmp_path / "metrics.json")  # the base model's predictions, labelled as such
    assert metrics["ttt_done"] == 0 and metrics["ttt_failed"] == 1
    assert "no TTT examples" in metrics["ttt_errors"][BIG]
    report = (tmp_path / "report.html").read_text()  # the page of a failed run says so, and why
    assert 'id="run-status">failed<' in report and "TTT failed on all 1 tasks" in report
    assert f"TTT failed: ValueError: task(s) {BIG}: no TTT examples" in report


def test_a_partial_failure_names_the_tasks_that_fell_back_and_why(tiny_model_dir, tmp_path, capsys):
    metrics = run_in(tmp_path, tiny_model_dir, task_ids=[BIG, SMALL[0]])
    assert metrics["ttt_done"] == 1 and list(metrics["ttt_errors"]) == [BIG]
    assert read_json(tmp_path / "run.json")["status"] == "finished"
    out = capsys.readouterr().out
    assert f"TTT on 1 of 2 tasks; TTT FAILED, base model predicted: {BIG} (ValueError: task(s) {BIG}: no TTT" in out
    rows = {r["task_id"]: r for r in read_json(tmp_path / "results.json")}
    assert rows[BIG]["ttt_status"] == "failed" and "no TTT examples" in rows[BIG]["ttt_error"]
    assert read_json(tmp_path / BIG / "predictions.json")["predicted_by"] == "base"


def test_resume_refuses_finished_tasks_made_with_other_settings_unless_told(tiny_model_dir, tmp_path, caplog):
    first = run_in(tmp_path, tiny_model_dir, task_ids=SMALL[:1])
    made = read_json(tmp_path / SMALL[0] / "ttt.json")
    assert made["settings"]["ttt.lr"] == 1e-3

    again = run_in(tmp_path, tiny_model_dir, task_ids=SMALL[:1])  # same settings: kept, not redone
    assert read_json(tmp_path / SMALL[0] / "ttt.json") == made and again["score"] == first["score"]

    with pytest.raises(ResumeMismatch) as refused:
        run_in(tmp_path, tiny_model_dir, "ttt.lr=2e-3", "seed=1", task_ids=SMALL[:1])
    message = str(refused.value)
    assert "ttt.lr: 0.001 -> 0.002" in message and "seed: 0 -> 1" in message and SMALL[0] in message
    assert "resume=redo" in message and read_json(tmp_path / SMALL[0] / "ttt.json") == made  # nothing touched

    run_in(tmp_path, tiny_model_dir, "ttt.lr=2e-3", "resume=force", task_ids=SMALL[:1])
    assert read_json(tmp_path / SMALL[0] / "ttt.json") == made
    assert "resume=force: keeping 1 task(s)" in caplog.text

    run_in(tmp_path, tiny_model_dir, "ttt.lr=2e-3", "resume=redo", task_ids=SMALL[:1])
    redone = read_json(tmp_path / SMALL[0] / "ttt.json")
    assert redone["settings"]["ttt.lr"] == 2e-3 and redone["ttt_nll"] != made["ttt_nll"]  # a larger step
    prediction = read_json(tmp_path / SMALL[0] / "predictions.json")
    assert prediction["settings"]["ttt.lr"] == 2e-3  # predicted again, by the new adapter

    launches = sorted(p.name for p in (tmp_path / "configs").iterdir())
    assert launches == ["launch-1.yaml", "launch-2.yaml", "launch-3.yaml", "launch-4.yaml"]  # none overwritten
    assert "lr: 0.002" in (tmp_path / "configs" / "launch-4.yaml").read_text()


def test_resume_checks_inference_settings_too(tiny_model_dir, tmp_path):
    run_in(tmp_path, tiny_model_dir, "ttt.enabled=false", task_ids=SMALL[:1])
    with pytest.raises(ResumeMismatch, match=r"inference.transforms: \['identity'\] -> \['identity', 'rot90'\]"):
        run_in(tmp_path, tiny_model_dir, "ttt.enabled=false", "inference.transforms=[identity,rot90]", task_ids=SMALL[:1])


def shard_dir(path, shard, num_shards, task_ids, status="finished", lr=1e-3, results=True):
    """A shard's outputs as a run leaves them (run.json, results.json, submission.json)."""
    path.mkdir(parents=True)
    settings = {"data.shard": shard, "ttt.lr": lr, "paths.output_dir": str(path)}
    job = {"status": status, "shard": shard, "num_shards": num_shards, "task_ids": task_ids, "settings": settings}
    (path / "run.json").write_text(json.dumps(job))
    if results:
        rows = [{"task_id": t, "score": 1.0, "vote_score": 1.0, "oracle": 1.0, "view_accuracy": 1.0,
                 "all_solved": True, "ttt_status": "done", "ttt_seconds": 1.0, "seconds": 1.0, "predicted": True} for t in task_ids]  # fmt: skip
        (path / "results.json").write_text(json.dumps(rows))
        (path / "submission.json").write_text(json.dumps({t: [] for t in task_ids}))
    return path


def test_merge_refuses_a_missing_shard_unless_partial_is_allowed(tmp_path):
    first = shard_dir(tmp_path / "0", 0, 2, ["a", "c"])
    with pytest.raises(MergeError, match=r"shard\(s\) \[1\] of 2 not given"):
        merge([first], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    assert merge([first], tmp_path / "merged", allow_partial=True)["num_tasks"] == 2


def test_merge_names_unfinished_shards_missing_tasks_and_other_settings(tmp_path):
    done = shard_dir(tmp_path / "0", 0, 2, ["a", "c"])
    killed = shard_dir(tmp_path / "1", 1, 2, ["b", "d"], status="interrupted")
    (killed / "results.json").write_text(json.dumps(read_json(done / "results.json")[:0]))
    with pytest.raises(MergeError) as refused:
        merge([done, killed], tmp_path / "merged")
    assert "shard 1 is interrupted, not finished" in str(refused.value)
    assert "2 task(s) missing from its results: b, d" in str(refused.value)

    other = shard_dir(tmp_path / "other", 1, 2, ["b", "d"], lr=5e-5)
    with pytest.raises(MergeError, match="was run with other settings than .*: ttt.lr 0.001 vs 5e-05"):
        merge([done, other], tmp_path / "merged", allow_partial=True)  # never combined, even partially
    twice = shard_dir(tmp_path / "again", 0, 2, ["a", "c"])
    with pytest.raises(MergeError, match="shard 0 given more than once"):
        merge([done, twice], tmp_path / "merged", allow_partial=True)


def test_the_adapter_is_saved_before_inference_so_an_inference_error_keeps_it(tiny_model_dir, tmp_path, monkeypatch):
    from ttt.inference.predictor import Predictor

    def broken(self, model, tasks, *args, **kwargs):
        assert (tmp_path / SMALL[0] / "adapter_model.safetensors").is_file()  # already saved
        raise RuntimeError("inference broke")

    monkeypatch.setattr(Predictor, "predict", broken)
    with pytest.raises(RuntimeError, match="inference broke"):
        run_in(tmp_path, tiny_model_dir, task_ids=SMALL[:1])
    assert (tmp_path / SMALL[0] / "adapter_config.json").is_file()
    assert read_json(tmp_path / "run.json")["status"] == "failed"
    assert not list(tmp_path.glob(f"{SMALL[0]}/.adapter.*"))  # no temporary folder left behind


def test_a_tasks_ttt_seconds_leave_out_the_inference_at_fit_end(tiny_model_dir, tmp_path, monkeypatch):
    from ttt.inference.predictor import Predictor

    predict = Predictor.predict

    def slow(self, model, tasks, *args, **kwargs):
        time.sleep(10)  # far longer than the tiny model's whole TTT
        return predict(self, model, tasks, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", slow)
    run_in(tmp_path, tiny_model_dir, task_ids=SMALL[:1])
    assert read_json(tmp_path / SMALL[0] / "ttt.json")["seconds"] < 10  # it used to count the inference callback's too


def train_py_until(out_dir, model_dir, stop, sig):
    """Start train.py; once `stop(out_dir)` holds, send `sig`; return the finished process."""
    process = subprocess.Popen(
        train_py_three(model_dir, out_dir),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # Ctrl-C as in a terminal, even when the tests run as a background job (SIGINT ignored there)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 600
    while not stop(out_dir) and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stdout, stderr


# ~2 s of TTT a task (~0.2 s at the tiny recipe): the signal must land while tasks remain, not after
# the last one (a race the tiny recipe lost on a fast CI machine)
SLOW_TASKS = ["ttt.epochs=40"]


def train_py_three(model_dir, run_dir):
    """The train.py command line of the three-task run, in `run_dir`."""
    return [sys.executable, "train.py", *tiny_run(model_dir, THREE), *SLOW_TASKS, f"hydra.run.dir={run_dir}"]


def first_task_predicted(out_dir):
    return (Path(out_dir) / THREE[0] / "predictions.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_killed_run_resumes_to_the_same_outputs_and_sigterm_writes_what_is_finished(sig, tiny_model_dir, tmp_path):
    """SIGTERM (a pre-empted job) and SIGINT (Ctrl-C, also in the middle of a Lightning fit) write
    what finished and exit 128 + the signal; SIGKILL loses the task in progress; all resume."""
    clean = subprocess.run(
        train_py_three(tiny_model_dir, tmp_path / 'clean'),
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert clean.returncode == 0, clean.stderr[-3000:]

    killed = tmp_path / "killed"
    code, stdout, stderr = train_py_until(killed, tiny_model_dir, first_task_predicted, sig)
    if sig != signal.SIGKILL:
        assert code == 128 + sig, stderr[-3000:]
        job = read_json(killed / "run.json")
        assert job["status"] == "interrupted" and job["task_ids"] == sorted(THREE)
        finished = [r["task_id"] for r in read_json(killed / "results.json")]
        assert THREE[0] in finished and len(finished) < 3  # what finished, nothing made up
        assert set(read_json(killed / "submission.json")) == set(finished)
        assert f"{sig.name}: writing what is finished" in stdout
        report = (killed / "report.html").read_text()  # the page of what finished, the rest listed as missing
        assert 'id="run-status">interrupted<' in report and f'<section class="task" id="task-{THREE[0]}"' in report
        assert f"{THREE[2]}/predictions.json: missing (not predicted" in report
    else:
        assert code == -signal.SIGKILL

    resumed = subprocess.run(
        train_py_three(tiny_model_dir, killed),
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_json(killed / "run.json")["status"] == "finished"
    assert (killed / "submission.json").read_text() == (tmp_path / "clean" / "submission.json").read_text()
    for task in THREE:
        assert (killed / task / "adapter_model.safetensors").read_bytes() == (
            tmp_path / "clean" / task / "adapter_model.safetensors"
        ).read_bytes()


EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_one_tiny_step(experiment, tiny_model_dir, tmp_path, monkeypatch):
    ship_as = compose_config(f"experiment={experiment}").finetune.ship_as
    if ship_as:  # a fine-tuning stage: ships into a temporary folder, never into the package
        import ttt.model.loading
        import ttt.ship_adapter

        monkeypatch.setattr(ttt.ship_adapter, "SHIPPED_ADAPTERS", tmp_path / "shipped")
        monkeypatch.setattr(ttt.model.loading, "SHIPPED_ADAPTERS", tmp_path / "shipped")
        tiny_ft = ("finetune.limit_tasks=4", "finetune.copies=1", "finetune.max_seq_len=512", "finetune.max_steps=1",
                   "finetune.holdout_task_ids=[6150a2bd]", "logger=none")  # fmt: skip
        run_in(tmp_path, tiny_model_dir, f"experiment={experiment}", *tiny_ft)
        assert read_json(tmp_path / "finetune.json")["global_step"] == 1
        assert (tmp_path / "shipped" / ship_as / "adapter_model.safetensors").is_file()
        return
    if experiment == "qlora":  # 4-bit weights need bitsandbytes on a CUDA GPU: refused at once without one
        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is here: QLoRA would really load")
        with pytest.raises(RuntimeError, match="model.quantization=4bit .* needs a CUDA GPU"):
            run_in(tmp_path, tiny_model_dir, f"experiment={experiment}", task_ids=SMALL[:1])
        return
    metrics = run_in(tmp_path, tiny_model_dir, f"experiment={experiment}", task_ids=SMALL[:1])
    assert metrics["num_tasks"] == 1 and metrics["not_predicted"] == 0
    assert read_json(tmp_path / "run.json")["status"] == "finished"


def test_finetuning_refuses_to_resume_a_checkpoint_made_with_other_settings(tiny_model_dir, tmp_path):
    stage = [
        "stage=finetune", f"model.name_or_path={tiny_model_dir}", "model.adapter=null", "model.format=compact", "logger=none",
        "finetune.train_sets=[arc-agi-1/training]", "finetune.limit_tasks=4", "finetune.copies=1",
        "finetune.max_seq_len=512", "finetune.max_steps=2", "finetune.effective_batch_size=2",
        "finetune.checkpoint_every_n_steps=1", "trainer.progress_bar=false", f"paths.output_dir={tmp_path}",
    ]  # fmt: skip
    run(compose_config(*stage))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert read_json(tmp_path / "run.json")["status"] == "finished"
    with pytest.raises(ResumeMismatch, match=r"finetune.lr: 2e-05 -> 0.001"):
        run(compose_config(*stage, "finetune.lr=1e-3"))
    record = run(compose_config(*stage, "finetune.lr=1e-3", "resume=redo"))  # starts again
    assert record["resumed_from"] is None and record["global_step"] == 2


def test_tasks_adapted_with_inference_off_are_predicted_later_by_their_own_adapter(tiny_model_dir, tmp_path):
    run_in(tmp_path, tiny_model_dir, "inference.enabled=false", task_ids=SMALL[:1])
    assert not (tmp_path / SMALL[0] / "predictions.json").exists()
    run_in(tmp_path, tiny_model_dir, task_ids=SMALL[:1])  # TTT skipped (same settings); predicted now
    later = read_json(tmp_path / SMALL[0] / "predictions.json")
    assert later["predicted_by"] == "adapter" and later["note"] == "its adapter, saved by an earlier launch"
    run_in(tmp_path / "straight", tiny_model_dir, task_ids=SMALL[:1])
    straight = read_json(tmp_path / "straight" / SMALL[0] / "predictions.json")
    assert later["heldout"] == straight["heldout"] and later["tests"] == straight["tests"]  # the same adapter


def test_a_run_over_levelled_tasks_with_a_token_budget_scores_each_level(tiny_model_dir, tmp_path, capsys):
    """data.levels alone selects the tasks (as data=arc_agi_1_paper80 does) and labels them; every
    task's TTT samples stay within ttt.max_tokens."""
    overrides = [o for o in tiny_run(tiny_model_dir) if not o.startswith("data.task_ids")]
    levels = f"data.levels={{easy:[{SMALL[0]}],hard:[{SMALL[1]}]}}"
    metrics = run(compose_config(*overrides, "data.task_ids=null", levels, "ttt.max_examples=8", "ttt.max_tokens=300",
                         f"paths.output_dir={tmp_path}"))  # fmt: skip
    assert sorted(read_json(tmp_path / "run.json")["task_ids"]) == sorted(SMALL)
    assert {level: s["num_scored"] for level, s in metrics["by_level"].items()} == {"easy": 1, "hard": 1}
    records = [read_json(tmp_path / t / "ttt.json") for t in SMALL]
    assert all(0 < r["num_tokens"] <= 300 for r in records) and metrics["ttt_tokens"] == sum(r["num_tokens"] for r in records)
    assert "pass@2 by level: easy 0/1 (0.000); hard 0/1" in capsys.readouterr().out  # data.levels' order
