"""`report.html`: one self-contained page per run directory with every task's grids, attempts and
diagnostics (inline SVG, no network, opens from disk), and `index.html` for a multirun.

    python -m ttt.report outputs/2026-11-26/10-00-00      # a run (or merged shards): report.html
    python -m ttt.report multirun/2026-11-26/10-00-00     # a sweep: each job's report + index.html

`train.py` writes the report at the end of every TTT run (also a failed or killed one), and a
sweep's index when the multirun ends (`SweepIndex`, a Hydra callback in configs/hydra/default.yaml).

The page reads only the run directory's files: `run.json` (state and settings), `metrics.json`
(else the summary is computed from the per-task files), and per task `task.json` (the grids; runs
from before it existed reload the task from the data settings in run.json), `predictions.json`
(attempts and candidates), `ttt.json` (held-out NLL, loss) and the fit's `logs/*/metrics.csv` (the
loss curve). A missing, unreadable or unexpected file never stops the page: it is drawn from what
exists, and the top of the page lists every file that is missing and what that leaves out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import drawsvg
from hydra.experimental.callback import Callback
from jinja2 import Environment, PackageLoader, Undefined
from markupsafe import Markup

from ttt.arc.grid import from_rows, shape
from ttt.arc.loading import TaskError, load_tasks, parse_task
from ttt.arc.task import Task
from ttt.grid_drawing import PALETTE, differing_cells, grid_svg
from ttt.outputs import (
    METRIC_KEYS, PREDICTIONS, REPORT, SHARED, SWEEP_INDEX, TASK_RECORD, TTT_RECORD, RunDir, write_text_atomic,
)  # fmt: skip
from ttt.results import metrics_from_rows, task_row
from ttt.selection_rules import rule_scores

TOP_CANDIDATES = 5  # candidates drawn per test input (attempts are drawn besides)
# Settings shown at the top of a page (all of them are in run.json).
KEY_SETTINGS = (
    "data.dataset", "data.split", "model.name_or_path", "model.adapter", "ttt.enabled", "ttt.epochs", "ttt.lr",
    "ttt.lora.rank", "inference.decoder", "inference.selection", "inference.voting", "seed",
)  # fmt: skip


@dataclass
class Problems:
    """What is missing or unreadable in a run directory, in the order found."""

    layout: RunDir
    items: list[str] = field(default_factory=list)

    def read(self, path: Path, missing: str | None) -> dict | None:
        """The JSON object in `path` (a file of the run directory); None (noting why, unless
        `missing` is None and the file is merely absent) when it is absent, unreadable or not an object."""
        relative = path.relative_to(self.layout.root).as_posix()
        if not path.is_file():
            if missing:
                self.items.append(f"{relative}: missing ({missing})")
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            self.items.append(f"{relative}: unreadable ({error}); {missing or 'left out'}")
            return None
        if not isinstance(data, dict):
            self.items.append(f"{relative}: unexpected content (a JSON {type(data).__name__}, not an object); left out")
            return None
        return data


def write_report(run_dir: str | Path, top_candidates: int = TOP_CANDIDATES) -> Path:
    """Write `run_dir/report.html`; return its path. Raises only if `run_dir` is not a directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    page = run_page(run_dir, top_candidates)
    path = RunDir(run_dir).report
    write_text_atomic(path, _environment().get_template("report.html.j2").render(**page))
    return path


def run_page(run_dir: Path, top_candidates: int = TOP_CANDIDATES) -> dict:
    """Everything report.html shows, read from the run directory."""
    layout = RunDir(run_dir)
    problems = Problems(layout)
    run = problems.read(layout.run_record, "the run's state and settings are unknown") or {}
    settings = run.get("settings") or {}
    ids = layout.task_ids(run.get("task_ids") or [])  # run.json's order, then any other task folder
    tasks = _tasks(layout, ids, settings, problems)
    views, rows = [], []
    for task_id in ids:
        view = _task_view(layout, task_id, tasks.get(task_id), settings, problems, top_candidates)
        views.append(view)
        rows.append(view["row"])
    metrics = problems.read(layout.metrics, "the summary below is computed from the per-task files")
    if metrics is None:
        levels = settings.get("data.levels")
        metrics = metrics_from_rows(rows, list(levels) if isinstance(levels, dict) else ()) if rows else {}
    if not ids:
        problems.items.append("no task found: no run.json task list and no <task_id>/ folder with a task's files")
    return {
        "title": f"TTT report: {run_dir.resolve().name}",
        "run_dir": str(run_dir.resolve()),
        "run": run,
        "settings": {k: settings[k] for k in KEY_SETTINGS if k in settings},
        "metrics": _all_keys(metrics),
        "rule_scores": rule_scores(metrics),
        "tasks": views,
        "problems": problems.items,
        "palette": PALETTE,
        "levelled": any(row.get("level") for row in rows),
    }


def _tasks(layout: RunDir, ids: Sequence[str], settings: dict, problems: Problems) -> dict[str, Task]:
    """Each task from its task.json; tasks without one (older runs) from the run's data settings."""
    tasks, absent = {}, []
    for task_id in ids:
        raw = problems.read(layout.task(task_id), None)
        if raw is None:
            absent.append(task_id)
            continue
        try:
            tasks[task_id] = parse_task(str(layout.task(task_id)), task_id, raw)
        except TaskError as error:
            problems.items.append(f"{task_id}/{TASK_RECORD}: {error.problem}; its grids are not drawn")
    if absent:
        found = _reload(absent, settings)
        tasks.update(found)
        for task_id in absent:
            if task_id not in found:
                problems.items.append(
                    f"{task_id}/{TASK_RECORD}: missing, and the data settings in run.json do not give the task: "
                    "its demonstrations, test inputs and true outputs are not drawn"
                )
    return tasks


def _reload(task_ids: Sequence[str], settings: dict) -> dict[str, Task]:
    """The tasks as the run loaded them (its `data.*` settings); {} when that is not possible."""
    if not settings:
        return {}
    try:
        loaded = load_tasks(
            settings.get("data.dataset", "arc-agi-1"), settings.get("data.split", "evaluation"),
            settings.get("data.task_dir"), settings.get("data.challenges"), settings.get("data.solutions"),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, ModuleNotFoundError):
        return {}
    wanted = set(task_ids)
    return {t.id: t for t in loaded.tasks if t.id in wanted}


def _task_view(
    layout: RunDir, task_id: str, task: Task | None, settings: dict, problems: Problems, top_candidates: int
) -> dict:
    """One task's section: its row of the summary table, demonstrations, tests and diagnostics."""
    predicting, adapting = (settings.get(f"{stage}.enabled", True) for stage in ("inference", "ttt"))  # unknown: both
    prediction = problems.read(layout.predictions(task_id), "not predicted: no attempts or candidates" if predicting else None)
    shared = settings.get("ttt.adapter") == "shared"  # the shared-adapter ablation keeps one record for all tasks
    ttt = problems.read(layout.ttt_record(SHARED if shared else task_id), "no TTT record: not adapted" if adapting else None)
    level = _level(task_id, settings)
    try:
        row = task_row(task_id, prediction, ttt, level)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        problems.items.append(f"{task_id}: {PREDICTIONS} or {TTT_RECORD} has unexpected content ({error!r})")
        prediction, row = None, task_row(task_id, None, None, level)
    tests = []
    try:
        tests = _tests(task, prediction, top_candidates)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        problems.items.append(f"{task_id}/{PREDICTIONS}: unexpected content ({error!r}); its attempts are not drawn")
    return {
        "id": task_id,
        "row": row,
        "outcome": _outcome(row),
        "tests_solved": _tests_solved(prediction),
        "note": (prediction or {}).get("note"),
        "ttt": ttt,
        "loss_curve": _loss_curve(layout.logs(task_id)),
        "demos": [] if task is None else [
            {"input": _svg(e.input, label=f"demo {i + 1} input"), "output": _svg(e.output, label=f"demo {i + 1} output")}
            for i, e in enumerate(task.train)
        ],
        "tests": tests,
    }  # fmt: skip


def _level(task_id: str, settings: dict) -> str | None:
    """The task's level in the run's `data.levels` (None without)."""
    levels = settings.get("data.levels")
    if not isinstance(levels, dict):
        return None
    return next((level for level, ids in levels.items() if isinstance(ids, list) and task_id in ids), None)


def _tests(task: Task | None, prediction: dict | None, top_candidates: int) -> list[dict]:
    """Per test input: the input, the true output, both attempts (wrong cells crossed out) and the
    top candidates; what exists of them."""
    predicted = (prediction or {}).get("tests") or []
    count = max(len(task.test) if task else 0, len(predicted))
    tests = []
    for i in range(count):
        example = task.test[i] if task and i < len(task.test) else None
        truth = example.output if example else None
        result = predicted[i] if i < len(predicted) else None
        test = {"index": i, "input": _svg(example.input, label="test input") if example else None,
                "truth": _svg(truth, label="true output") if truth is not None else None,
                "attempts": [], "candidates": [], "result": result}  # fmt: skip
        if result is not None:
            for n, grid in enumerate(result["attempts"], start=1):
                test["attempts"].append({
                    "svg": _svg(grid, truth, label=f"attempt {n}"), "right": None if truth is None else _same(grid, truth),
                    "caption": _difference(grid, truth),
                })  # fmt: skip
            attempt_grids = [from_rows(g) for g in result["attempts"]]
            for rank, c in enumerate(result["candidates"][:top_candidates], start=1):
                key = from_rows(c["grid"])
                test["candidates"].append({
                    "svg": _svg(c["grid"], truth, label=f"candidate {rank}"), "rank": rank, "votes": c["votes"],
                    "groups": c.get("groups"), "best_logprob": c.get("best_logprob"), "poe_logprob": c.get("poe_logprob"),
                    "right": None if truth is None else _same(c["grid"], truth),
                    "attempt": attempt_grids.index(key) + 1 if key in attempt_grids else None,
                })  # fmt: skip
            test["more_candidates"] = max(0, len(result["candidates"]) - top_candidates)
        tests.append(test)
    return tests


def _svg(grid, reference=None, label: str = "") -> Markup:
    return Markup(grid_svg(grid, reference, label=label))


def _same(grid, truth) -> bool:
    return from_rows(grid) == from_rows(truth)


def _difference(grid, truth) -> str:
    """An attempt's caption: its shape, and how it differs from the true output."""
    height, width = shape(grid)
    if truth is None:
        return f"{height}x{width}"
    if _same(grid, truth):
        return f"{height}x{width}, right"
    if shape(grid) != shape(truth):
        return "{}x{}, wrong shape (true {}x{})".format(height, width, *shape(truth))
    wrong = len(differing_cells(grid, truth))
    return f"{height}x{width}, {wrong} cell{'s' if wrong != 1 else ''} wrong"


def _outcome(row: dict) -> str:
    """solved | partly | unsolved | unscored | not predicted."""
    if not row["predicted"]:
        return "not predicted"
    if row["score"] is None:
        return "unscored"
    return "solved" if row["score"] == 1 else "partly" if row["score"] > 0 else "unsolved"


def _tests_solved(prediction: dict | None) -> str | None:
    tests = (prediction or {}).get("tests") or []
    if not tests or any(t.get("solved") is None for t in tests):
        return None
    return f"{sum(bool(t['solved']) for t in tests)}/{len(tests)}"


def _loss_curve(logs: Path, width: int = 240, height: int = 48) -> dict | None:
    """The TTT loss per step (the newest Lightning CSV under `logs/`) as a small line chart, with
    its first and last values."""
    files = sorted(logs.glob("*/metrics.csv"), key=lambda p: p.stat().st_mtime) if logs.is_dir() else []
    if not files:
        return None
    try:
        with files[-1].open() as f:
            losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    except (OSError, ValueError, csv.Error):
        return None
    if len(losses) < 2:
        return None
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    points = [(width * i / (len(losses) - 1), height - 4 - (height - 8) * (v - low) / span) for i, v in enumerate(losses)]
    drawing = drawsvg.Drawing(width, height, class_="loss-curve", role="img")
    drawing.append_title(f"TTT loss per step: {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
    drawing.append(drawsvg.Lines(*[x for p in points for x in p], close=False, fill="none", stroke="#0074D9", stroke_width=1.5))
    svg = Markup(drawing.as_svg(header="").replace("<defs>\n</defs>\n", ""))
    return {"svg": svg, "first": losses[0], "last": losses[-1], "steps": len(losses)}


# --- a multirun ---------------------------------------------------------------------------------


def is_run_dir(path: Path) -> bool:
    """A run directory: its run.json or metrics.json, or a folder with a task's files."""
    layout = RunDir(path)
    return layout.run_record.is_file() or layout.metrics.is_file() or bool(layout.task_ids())


def sweep_jobs(sweep_dir: Path) -> list[Path]:
    """A multirun folder's job directories, in job order (Hydra numbers them 0, 1, ...)."""
    jobs = [d for d in sweep_dir.iterdir() if d.is_dir() and not d.name.startswith(".") and is_run_dir(d)]
    return sorted(jobs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))


def write_sweep_index(sweep_dir: str | Path, job_reports: bool = True, top_candidates: int = TOP_CANDIDATES) -> Path:
    """Write `sweep_dir/index.html` linking each job's report (written too, unless `job_reports` is
    False); return its path."""
    sweep_dir = Path(sweep_dir)
    jobs, problems = [], []
    for job_dir in sweep_jobs(sweep_dir):
        job = RunDir(job_dir)
        if job_reports or not job.report.is_file():
            write_report(job_dir, top_candidates)
        job_problems = Problems(job)
        run = job_problems.read(job.run_record, "state and settings unknown") or {}
        metrics = job_problems.read(job.metrics, "the job did not finish") or {}
        problems += [f"{job_dir.name}/{p}" for p in job_problems.items]
        jobs.append({
            "name": job_dir.name, "report": f"{job_dir.name}/{REPORT}", "status": run.get("status"),
            "overrides": _overrides(job), "metrics": _all_keys(metrics),
        })  # fmt: skip
    if not jobs:
        problems.append("no job folder with a run.json, metrics.json or task files")
    common = [o for o in jobs[0]["overrides"] if all(o in j["overrides"] for j in jobs)] if len(jobs) > 1 else []
    for job in jobs:  # each row shows what its job varies; what all share is said once
        job["overrides"] = [o for o in job["overrides"] if o not in common]
    levels = list(dict.fromkeys(level for j in jobs for level in j["metrics"].get("by_level") or {}))
    html = _environment().get_template("index.html.j2").render(
        title=f"TTT sweep: {sweep_dir.resolve().name}", sweep_dir=str(sweep_dir.resolve()), jobs=jobs,
        common_overrides=common, problems=problems, levels=levels,
    )  # fmt: skip
    path = sweep_dir / SWEEP_INDEX
    write_text_atomic(path, html)
    return path


def _all_keys(metrics: dict) -> dict:
    """The metrics with every key a run may return (None where this run has none: a run without
    inference has no score)."""
    return {**dict.fromkeys(METRIC_KEYS), **metrics}


def _overrides(job: RunDir) -> list[str]:
    """The job's command-line overrides (Hydra's .hydra/overrides.yaml), if kept."""
    from omegaconf import OmegaConf

    path = job.overrides
    try:
        return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []
    except Exception:  # noqa: BLE001 - a damaged overrides file only loses the column
        return []


class SweepIndex(Callback):
    """Hydra callback: when a multirun ends, write its index.html (each job wrote its own report)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            print(f"sweep report: {write_sweep_index(sweep_dir, job_reports=False)}")


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("ttt", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _number
    return env


def _number(value: Any, digits: int = 3) -> str:
    """A number for the page: '-' when absent."""
    if value is None or isinstance(value, Undefined):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"
