"""One run, read top to bottom: check the settings, select the tasks, check what a resume would
keep, load the base model once, adapt and predict per task, then summarize.

Everything that can be refused is refused before the model loads. A run in which TTT was asked
for and failed on every task exits non-zero (after writing what it has); SIGTERM (a pre-empted
job) or Ctrl-C (SIGINT) writes what is finished and exits with 128 + the signal's number (143,
130); `run.json` says which of these happened.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ttt import host_memory, interrupt, resume
from ttt.adapt import adapt_tasks
from ttt.arc.loading import load_tasks
from ttt.arc.task import Task
from ttt.deadline import RunClock
from ttt.finetune import run_finetune
from ttt.html_report import write_report
from ttt.interrupt import STOP_SIGNALS, Interrupted, signals_raise
from ttt.inference.callback import AugmentedInference
from ttt.inference.predictor import Predictor
from ttt.model.loading import load_model
from ttt.model.lora import Adapter, add_lora
from ttt.outputs import SHARED, RunDir, read_json, timestamp, write_json_atomic
from ttt.report import summarize, summarize_adaptation, table
from ttt.settings import RunSettings
from ttt.wandb_logging import WandbRun

class RunFailed(RuntimeError):
    """TTT was asked for and failed on every task."""


def run(cfg: DictConfig) -> dict | None:
    """The whole job; returns the run's metrics (TTT diagnostics alone when inference is off; None
    when neither runs) or the fine-tuning record."""
    settings = RunSettings.from_config(cfg)  # SettingsError lists every bad key, before anything runs
    clock = RunClock.of(settings.run)  # run.deadline: from here, model loading counted
    host_memory.configure(settings.trainer.host_memory)  # before the model's first tensors
    host_memory.bound_kernel_cache(settings.trainer.kernel_cache)  # before its first matmul
    out_dir = Path(settings.paths.output_dir or ".")
    tasks: list[Task] = []
    if settings.stage == "ttt":
        tasks = select_tasks(settings)
        settings = settings.for_tasks(len(tasks))  # trainer.compile=null: on for long runs
        resume.check(out_dir, [t.id for t in tasks], settings)
    else:
        resume.check_checkpoint(out_dir, settings)
    resume.keep_config(out_dir, OmegaConf.to_yaml(cfg))
    wandb_run = WandbRun(settings, out_dir) if settings.logger.name == "wandb" else None
    reported = _report_at_exit(out_dir, wandb_run) if settings.stage == "ttt" else contextlib.nullcontext()
    try:
        # the signal block outermost: a stop signal while report.html is written still exits 128 + signal
        with signals_raise(), reported, _job(out_dir, _job_record(settings, tasks)):
            if settings.stage == "finetune":
                metrics = run_finetune(settings, wandb_run)
            else:
                metrics = run_ttt(settings, tasks, out_dir, wandb_run, clock)
    except Interrupted as stop:
        if wandb_run is not None:
            wandb_run.finish(exit_code=stop.exit_code)
        raise SystemExit(stop.exit_code) from None
    except BaseException:
        if wandb_run is not None:
            wandb_run.finish(exit_code=1)  # a failed sweep job must not bleed into the next
        raise
    if wandb_run is not None:
        wandb_run.finish()
    return metrics


def select_tasks(settings: RunSettings) -> list[Task]:
    """This job's tasks (bad task files are skipped, each logged with file, task and field)."""
    d = settings.data
    loaded = load_tasks(
        d.dataset, d.split, d.task_dir, d.challenges, d.solutions, d.selected_ids, d.limit, d.shard, d.num_shards
    )
    if not loaded.tasks:
        raise ValueError(f"no tasks selected ({len(loaded.errors)} skipped as invalid): check the data settings")
    out_dir = settings.paths.output_dir or "."
    print(f"{len(loaded.tasks)} tasks selected ({len(loaded.errors)} skipped as invalid); output: {out_dir}")
    return loaded.tasks


def run_ttt(
    settings: RunSettings, tasks: list[Task], out_dir: Path, wandb_run: WandbRun | None, clock: RunClock | None = None
) -> dict | None:
    """TTT and inference over the tasks, within `clock`'s deadline; after SIGTERM or SIGINT, the
    outputs of those that finished."""
    for task in tasks:  # the grids travel with the run directory (the report draws them)
        write_json_atomic(RunDir(out_dir).task(task.id), task.to_json())
    try:
        metrics = _adapt_and_predict(settings, tasks, out_dir, wandb_run, clock)
    except Interrupted as stop:
        print(f"{stop}: writing what is finished under {out_dir} and stopping")
        for signum in STOP_SIGNALS:  # a second signal must not cut the writing short
            signal.signal(signum, signal.SIG_IGN)
        _write_finished(settings, tasks, out_dir)
        raise
    if settings.ttt.enabled and metrics is not None and metrics.get("ttt_done") == 0 and metrics.get("ttt_failed"):
        # (tasks run.deadline left unadapted did not fail)
        raise RunFailed(
            f"TTT failed on all {len(tasks)} tasks (each task's error is in <task>/ttt.json and results.json; "
            f"the scores above are the base model's): {out_dir}"
        )
    return metrics


def _adapt_and_predict(
    settings: RunSettings, tasks: list[Task], out_dir: Path, wandb_run: WandbRun | None, clock: RunClock | None
) -> dict | None:
    m = settings.model
    tokenizer, model = load_model(m.name_or_path, m.dtype, m.device, m.attn_implementation, m.quantization, m.adapter)
    check_context(model, settings.data.max_seq_len)
    callbacks = [wandb_run.callback()] if wandb_run else []
    predictor = None
    if settings.inference.enabled:
        text_format = m.text_format()
        predictor = Predictor(tokenizer, text_format, settings.inference, out_dir, settings.affecting_predictions(), clock)
        callbacks.append(AugmentedInference(predictor))

    adapter = None
    if settings.ttt.enabled:
        adapter = Adapter(add_lora(model, settings.ttt.lora, settings.seed))
        records = adapt_tasks(tasks, adapter, tokenizer, settings, out_dir, callbacks, clock)
        done = sum(r.status == "done" for r in records)
        print(f"TTT: {done}/{len(records)} adapters under {out_dir}")
    else:
        print("ttt.enabled=false: no adaptation (the fine-tuned-only baseline).")
    if predictor is None:
        if adapter is None:
            return None
        return summarize_adaptation([asdict(r) for r in records], out_dir)

    # Tasks adapted but not predicted (by an earlier launch with inference off) are predicted with
    # their saved adapter; the rest (TTT off or failed) by the base model.
    missing = [t for t in tasks if not RunDir(out_dir).predictions(t.id).is_file()]
    if missing and adapter is not None:
        by_unit = {r.task_id: r for r in records if r.status == "done"}
        for number, task in enumerate(missing):
            record = by_unit.get(task.id) or by_unit.get(SHARED)
            if record is not None:
                adapter.load(RunDir(out_dir).unit(record.adapter))
                left = len(missing) - number
                predictor.predict(adapter.model, [task], note="its adapter, saved by an earlier launch", tasks_left=left)
        adapter.reset()
        missing = [t for t in missing if not RunDir(out_dir).predictions(t.id).is_file()]
    if missing and adapter is not None:
        with adapter.model.disable_adapter():
            predictor.predict(adapter.model, missing, note="base model: no adapter", tasks_left=len(missing), by="base")
    elif missing:
        predictor.predict(model, missing, note="base model: no adapter", tasks_left=len(missing), by="base")

    metrics = summarize(tasks, out_dir, settings.data.level_of())
    if wandb_run is not None:
        wandb_run.log_results(read_json(RunDir(out_dir).results), tasks, metrics)
    print(table(out_dir))
    print(f"outputs: {out_dir}/submission.json, results.json, metrics.json; per task: {out_dir}/<task_id>/")
    return metrics


def check_context(model, max_seq_len: int) -> None:
    """Refuse a data.max_seq_len beyond the model's context (its position embeddings), before any
    task trains on sequences the model has never seen positions for."""
    context = getattr(model.config, "max_position_embeddings", None)
    if context is not None and max_seq_len > context:
        raise ValueError(
            f"data.max_seq_len={max_seq_len}: longer than the model's context ({context} positions, its "
            f"config's max_position_embeddings); set data.max_seq_len={context} or less"
        )


def _write_finished(settings: RunSettings, tasks: list[Task], out_dir: Path) -> None:
    """After SIGTERM or SIGINT: the run's outputs over the tasks that finished (none is made up)."""
    if settings.inference.enabled:
        finished = [t for t in tasks if RunDir(out_dir).predictions(t.id).is_file()]
        if finished:
            summarize(finished, out_dir, settings.data.level_of())
            print(table(out_dir))
    else:
        finished = [r for r in (read_json(RunDir(out_dir).ttt_record(t.id)) for t in tasks) if r is not None]
        if finished:
            summarize_adaptation(finished, out_dir)
    print(f"finished {len(finished)} of {len(tasks)} tasks; run again with the same output directory to resume")


def _job_record(settings: RunSettings, tasks: list[Task]) -> dict:
    """What `run.json` says of this job: its shard, its tasks and its settings (merges check them)."""
    return {
        "status": "running",
        "shard": settings.data.shard,
        "num_shards": settings.data.num_shards,
        "task_ids": [t.id for t in tasks],
        "started": timestamp(),
        "settings": settings.flat(),
    }


@contextlib.contextmanager
def _job(out_dir: Path, record: dict) -> Iterator[None]:
    """`run.json` says `running` within the block, then how it ended: finished, failed (with the
    error) or interrupted."""
    write_json_atomic(RunDir(out_dir).run_record, record)
    try:
        yield
        interrupt.check()  # a stop signal swallowed after the last task: not "finished"
    except Interrupted:
        write_json_atomic(RunDir(out_dir).run_record, {**record, "status": "interrupted", "ended": timestamp()})
        raise
    except BaseException as error:
        write_json_atomic(RunDir(out_dir).run_record, {**record, "status": "failed", "ended": timestamp(), "error": str(error)})
        raise
    write_json_atomic(RunDir(out_dir).run_record, {**record, "status": "finished", "ended": timestamp()})


@contextlib.contextmanager
def _report_at_exit(out_dir: Path, wandb_run: WandbRun | None) -> Iterator[None]:
    """After the block, however it ends (run.json already says how), write report.html (and hand
    it to the W&B run's files); a report that cannot be written is said, never allowed to fail a
    run whose outputs are safe."""
    try:
        yield
    finally:
        try:
            report = write_report(out_dir)
            print(f"report: {report} (open it in a browser)")
            if wandb_run is not None:
                wandb_run.save_file(report)
        except Exception as error:  # noqa: BLE001 - the run's results are written; the page is extra
            print(f"report.html not written ({type(error).__name__}: {error}); try: python -m ttt.report {out_dir}")
