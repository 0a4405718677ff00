"""The run's outputs: `submission.json` (Kaggle format, every task), `results.json` (one row per
task), `metrics.json` (the summary; the TTT diagnostics alone when inference is off) and a table on
the console; merging shards. `python -m ttt.report` writes the HTML report (`ttt.html_report`) or
merges (`python -m ttt.report merge`)."""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from ttt.arc.grid import from_rows
from ttt.arc.scoring import submission_entry, task_score
from ttt.arc.task import Task
from ttt.knobs import differences
from ttt.outputs import RESULTS, RUN_RECORD, SUBMISSION, RunDir, read_json, timestamp, write_json_atomic
from ttt.results import metrics_from_rows, rounded_mean, task_row
from ttt.selection_rules import rule_scores


def summarize(tasks: Sequence[Task], out_dir: str | Path, levels: Mapping[str, str] | None = None) -> dict:
    """Gather every task's files under `out_dir` into the run's outputs; return the metrics.
    `levels`: {task id: level} (`data.levels`), for the scores per level."""
    layout = RunDir(out_dir)
    submission, rows = {}, []
    for task in tasks:
        prediction = read_json(layout.predictions(task.id))
        ttt = read_json(layout.adaptation_of(task.id))
        if prediction is None:  # never predicted: the fallback keeps the submission complete and is scored
            attempts = [[t.input, ((0,),)] for t in task.test]
            if task.has_solutions:
                prediction_score = task_score(attempts, [t.output for t in task.test])["score"]
                prediction = {"score": prediction_score, "vote_score": prediction_score, "predicted": False}
        else:
            attempts = [[from_rows(g) for g in t["attempts"]] for t in prediction["tests"]]
        submission[task.id] = submission_entry(attempts)
        level = (levels or {}).get(task.id)
        rows.append({**task_row(task.id, prediction, ttt, level), "attempts": submission[task.id]})
    return write_outputs(layout, submission, rows, list(dict.fromkeys((levels or {}).values())))


def write_outputs(layout: RunDir, submission: dict, rows: list[dict], levels: Sequence[str] = ()) -> dict:
    """Write submission.json, results.json and metrics.json; return the metrics."""
    metrics = metrics_from_rows(rows, levels)
    write_json_atomic(layout.submission, submission)
    write_json_atomic(layout.results, rows)
    write_json_atomic(layout.metrics, metrics)
    return metrics


def summarize_adaptation(records: Sequence[dict], out_dir: str | Path) -> dict:
    """Without inference: the TTT records' diagnostics alone (held-out NLL before/after) into
    metrics.json, printed in one line; returns the metrics."""
    measured = [r for r in records if r.get("base_nll") is not None and r.get("ttt_nll") is not None]
    metrics = {
        "num_tasks": len(records),
        "ttt_done": sum(r["status"] == "done" for r in records),
        "ttt_failed": sum(r["status"] == "failed" for r in records),
        "ttt_errors": {r["task_id"]: r["error"] for r in records if r["status"] == "failed"},
        "base_nll": rounded_mean([r["base_nll"] for r in measured]),
        "ttt_nll": rounded_mean([r["ttt_nll"] for r in measured]),
        "nll_lowered": sum(r["ttt_nll"] < r["base_nll"] for r in measured),
        "nll_measured": len(measured),
        "ttt_seconds": round(sum(r["seconds"] for r in records), 1),
        "ttt_seconds_per_task": round(statistics.fmean(r["seconds"] for r in records), 1) if records else None,
        "ttt_tokens": sum(r.get("num_tokens") or 0 for r in records),  # every task's TTT samples' tokens (one epoch)
    }
    write_json_atomic(RunDir(out_dir).metrics, metrics)
    print(ttt_line(metrics))
    print(
        f"held-out NLL per token: {metrics['base_nll']} before TTT -> {metrics['ttt_nll']} after; lowered on "
        f"{metrics['nll_lowered']} of {metrics['nll_measured']} tasks; {metrics['ttt_seconds_per_task']} s TTT per task"
    )
    return metrics


class MergeError(ValueError):
    """Shards that do not make one whole run."""


# Keys that differ between the shards of one run by design.
PER_SHARD_KEYS = ("data.shard", "paths.output_dir")


def merge(shard_dirs: Sequence[str | Path], out_dir: str | Path, allow_partial: bool = False) -> dict:
    """Combine shard jobs' outputs into one run directory: submission.json, results.json,
    metrics.json, a run.json naming the shards, and each task's records and fit logs (not its
    adapter), so that `ttt.html_report` draws the merged run like any other.

    Each shard's `run.json` says its index, the shard count and its task ids. The merge refuses
    (naming them) a missing or duplicated shard, an unfinished shard, a task missing from a shard's
    results, or shards run with different settings; `allow_partial` merges whatever finished,
    except shards with different settings or duplicates, which are never combined."""
    out = RunDir(out_dir)
    jobs = {RunDir(d): read_json(RunDir(d).run_record) for d in shard_dirs}
    problems, fatal = _shard_problems(jobs)
    rows, submission = [], {}
    for shard_dir, job in jobs.items():
        results, entries = read_json(shard_dir.results), read_json(shard_dir.submission)
        if results is None or entries is None:
            problems.append(f"{shard_dir.root}: no {RESULTS} or {SUBMISSION}: did that shard finish?")
            continue
        missing = sorted(set((job or {}).get("task_ids", [])) - {r["task_id"] for r in results})
        if missing:
            problems.append(f"{shard_dir.root}: {len(missing)} task(s) missing from its results: {', '.join(missing)}")
        rows += results
        submission.update(entries)
    ids = [r["task_id"] for r in rows]
    duplicated = sorted({t for t in ids if ids.count(t) > 1})
    if duplicated:
        fatal.append(f"task {duplicated[0]} appears in more than one shard")
    if fatal or (problems and not allow_partial):
        hint = "" if fatal else "\n(--allow-partial merges what there is)"
        raise MergeError("cannot merge:\n" + "\n".join(f"  - {p}" for p in fatal + problems) + hint)
    for problem in problems:
        print(f"merging anyway (--allow-partial): {problem}")
    rows.sort(key=lambda r: r["task_id"])
    _copy_task_files(jobs, out, {r["task_id"] for r in rows})
    first = next((j for j in jobs.values() if j is not None), {})
    write_json_atomic(out.run_record, {
        "status": "partial" if problems else "finished", "shard": 0, "num_shards": 1,
        "task_ids": [r["task_id"] for r in rows], "settings": first.get("settings", {}),
        "merged_from": [str(d.root) for d in jobs], "ended": timestamp(),
    })  # fmt: skip
    levels = list((first.get("settings", {}).get("data.levels") or {}))
    return write_outputs(out, dict(sorted(submission.items())), rows, levels)


def _copy_task_files(jobs: dict[RunDir, dict | None], out: RunDir, task_ids: set[str]) -> None:
    """Each task's task, predictions and TTT records and fit logs (what the report reads; not its
    adapter), from its shard into the merged run."""
    for shard in jobs:
        for task_id in sorted(t for t in task_ids if shard.unit(t).is_dir()):
            for record in (RunDir.task, RunDir.predictions, RunDir.ttt_record):
                if record(shard, task_id).is_file():
                    out.unit(task_id).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(record(shard, task_id), record(out, task_id))
            if shard.logs(task_id).is_dir():
                shutil.copytree(shard.logs(task_id), out.logs(task_id), dirs_exist_ok=True)


def _shard_problems(jobs: dict[RunDir, dict | None]) -> tuple[list[str], list[str]]:
    """(problems a partial merge may accept, problems it never may) of the shards' run.json."""
    problems = [f"{d.root}: no {RUN_RECORD}: not a run directory, or the run never started" for d, j in jobs.items() if j is None]
    found = {d: j for d, j in jobs.items() if j is not None}
    if not found:
        return problems, []
    fatal = []
    counts = sorted({j["num_shards"] for j in found.values()})
    if len(counts) > 1:
        fatal.append(f"shards of runs with different data.num_shards: {counts}")
    indices = [j["shard"] for j in found.values()]
    duplicated = sorted({i for i in indices if indices.count(i) > 1})
    if duplicated:
        fatal.append(f"shard {duplicated[0]} given more than once")
    absent = sorted(set(range(counts[-1])) - set(indices))
    if absent:
        problems.append(f"shard(s) {absent} of {counts[-1]} not given")
    problems += [f"{d.root}: shard {j['shard']} is {j['status']}, not finished" for d, j in found.items() if j["status"] != "finished"]
    first_dir, first = next(iter(found.items()))
    for d, j in found.items():
        diff = {k: v for k, v in differences(first["settings"], j["settings"]).items() if k not in PER_SHARD_KEYS}
        if diff:
            keys = ", ".join(f"{k} {old!r} vs {new!r}" for k, (old, new) in diff.items())
            fatal.append(f"{d.root} was run with other settings than {first_dir.root}: {keys}")
    return problems, fatal


def table(out_dir: str | Path) -> str:
    """A readable summary of `results.json` and `metrics.json`."""
    layout = RunDir(out_dir)
    rows, metrics = read_json(layout.results), read_json(layout.metrics)

    def fmt(value, spec=".2f"):
        return "-" if value is None else format(value, spec)

    levelled = any(r.get("level") for r in rows)
    lines = [
        f"{'task':<10} " + (f"{'level':<7} " if levelled else "")
        + f"{'ttt':>7} {'loss':>7} {'NLL base':>8} {'NLL ttt':>8} {'score':>6} {'oracle':>6} "
        f"{'parsed':>6} {'views ok':>8} {'ttt tok':>7} {'ttt s':>6} {'infer s':>8}"
    ]
    for r in rows:
        lines.append(
            f"{r['task_id']:<10} " + (f"{r.get('level') or '-':<7} " if levelled else "")
            + f"{r['ttt_status'] or '-':>7} {fmt(r['ttt_final_loss'], '.3f'):>7} "
            f"{fmt(r.get('base_nll'), '.3f'):>8} {fmt(r.get('ttt_nll'), '.3f'):>8} "
            f"{fmt(r['score']):>6} {fmt(r['oracle']):>6} {fmt(r.get('parse_rate')):>6} {fmt(r['view_accuracy']):>8} "
            f"{fmt(r.get('ttt_tokens'), 'd'):>7} {fmt(r['ttt_seconds'], '.1f'):>6} {fmt(r['seconds'], '.1f'):>8}"
        )
    lines.append(
        f"score {fmt(metrics['score'], '.3f')} over {metrics['num_scored']} scored of {metrics['num_tasks']} tasks "
        f"({fmt(metrics['tasks_solved'], '.1f')} solved; all-tests-solved {fmt(metrics['all_solved'], '.3f')}; "
        f"oracle {fmt(metrics['oracle'], '.3f')}; by rule: "
        + (", ".join(f"{rule} {fmt(value, '.3f')}" for rule, value in rule_scores(metrics)) or "-")
        + ")"
    )
    if metrics.get("by_level"):
        lines.append(level_line(metrics["by_level"]))
    lines.append(ttt_line(metrics))
    lines.append(
        f"answers parsed into a grid: {fmt(metrics.get('parse_rate'), '.3f')}; "
        f"answers per view: {fmt(metrics.get('answers_per_view'), '.2f')}"
    )
    if not metrics.get("nll_measured") and metrics.get("base_nll") is not None:
        lines.append(f"held-out NLL per token (no TTT): {fmt(metrics['base_nll'], '.3f')}")
    if metrics.get("nll_measured"):
        lines.append(
            f"held-out NLL per token: {fmt(metrics['base_nll'], '.3f')} before TTT -> {fmt(metrics['ttt_nll'], '.3f')} "
            f"after; TTT lowered it on {metrics['nll_lowered']} of {metrics['nll_measured']} tasks"
        )
        unmoved = [r["task_id"] for r in rows if r.get("nll_drop") is not None and r["nll_drop"] <= 0]
        if unmoved:
            lines.append(f"TTT did NOT lower the held-out NLL of: {', '.join(unmoved)}")
    return "\n".join(lines)


def level_line(by_level: Mapping[str, dict]) -> str:
    """pass@2 per level: tasks solved of those scored, and the mean score."""
    parts = [
        f"{level} {s['tasks_solved']:g}/{s['num_scored']} ({s['score']:.3f})" if s["num_scored"] else f"{level} -/0"
        for level, s in by_level.items()
    ]
    return "pass@2 by level: " + "; ".join(parts)


def ttt_line(metrics: dict) -> str:
    """How many tasks TTT adapted, and which fell back to the base model, and why."""
    done, failed = metrics.get("ttt_done", 0), metrics.get("ttt_failed", 0)
    if not done and not failed:
        return "no TTT: every task predicted without adaptation"
    line = f"TTT on {done} of {metrics['num_tasks']} tasks"
    if failed:
        errors = metrics.get("ttt_errors") or {}
        line += "; TTT FAILED, base model predicted: " + "; ".join(f"{t} ({e})" for t, e in errors.items())
    return line


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m ttt.report DIR...`: write each run directory's report.html (a multirun folder:
    each job's report and index.html). `python -m ttt.report merge SHARD_DIR... --out DIR`: merge
    sharded jobs' outputs (and write the merged run's report)."""
    import argparse
    import sys

    from ttt import html_report

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        parser = argparse.ArgumentParser(prog="python -m ttt.report merge", description="Merge sharded runs into one run directory.")
        parser.add_argument("shard_dirs", nargs="+", type=Path, help="each shard job's output directory")
        parser.add_argument("--out", required=True, type=Path, help="where to write the merged outputs")
        parser.add_argument("--allow-partial", action="store_true", help="merge even with shards or tasks missing")
        args = parser.parse_args(argv[1:])
        try:
            merge(args.shard_dirs, args.out, args.allow_partial)
        except MergeError as error:
            raise SystemExit(str(error)) from None
        print(table(args.out))
        print(f"merged {len(args.shard_dirs)} shards into {args.out}/submission.json and metrics.json")
        print(f"report: {html_report.write_report(args.out)}")
        return
    parser = argparse.ArgumentParser(
        prog="python -m ttt.report",
        description="Write report.html for run directories (index.html for a multirun folder); "
        "`python -m ttt.report merge --help` merges shards.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="a run directory, merged shards or a multirun folder")
    parser.add_argument("--candidates", type=int, default=html_report.TOP_CANDIDATES, help="candidates drawn per test input")
    args = parser.parse_args(argv)
    for path in args.dirs:
        if not path.is_dir():
            raise SystemExit(f"{path}: no such directory (give a run directory or a multirun folder)")
        if not html_report.is_run_dir(path) and html_report.sweep_jobs(path):
            print(f"sweep report: {html_report.write_sweep_index(path, top_candidates=args.candidates)}")
        else:  # a run directory, however partial: the page lists what is missing
            print(f"report: {html_report.write_report(path, args.candidates)}")


if __name__ == "__main__":
    main()
