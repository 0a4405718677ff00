"""Resuming into a run directory: finished work is kept only if this run's settings made it.

Every task's `ttt.json` and `predictions.json` carries the settings it depends on
(`RunSettings.affecting_adapters` / `affecting_predictions`). Before any model loads, `check`
compares them with this run's, per `resume`:
- `check` (default): refuse, naming the keys that differ (old -> new) and the tasks they concern;
- `redo`: delete those tasks' records and predictions, so they are adapted and predicted again;
- `force`: keep them as they are (the run's outputs then mix settings; the log says which).
The fine-tuning stage's checkpoint is checked the same way against its `run.json`.
Each launch's composed config is kept as `configs/launch-N.yaml`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttt.knobs import differences
from ttt.outputs import SHARED, RunDir, read_json, write_text_atomic
from ttt.settings import RunSettings

log = logging.getLogger(__name__)


class ResumeMismatch(RuntimeError):
    """The run directory holds finished work made by other settings."""


def stale(out_dir: Path, task_ids: Sequence[str], settings: RunSettings) -> dict[Path, dict[str, tuple[Any, Any]]]:
    """`{file: {key: (old, new)}}` for every finished record or prediction made by other settings."""
    layout, expected = RunDir(out_dir), []
    if settings.ttt.enabled:
        names = [SHARED] if settings.ttt.adapter == "shared" else list(task_ids)
        expected += [(layout.ttt_record(n), settings.affecting_adapters()) for n in names]
    if settings.inference.enabled:
        expected += [(layout.predictions(t), settings.affecting_predictions()) for t in task_ids]
    found = {}
    defaults = RunSettings().flat()  # for settings added since a record was made
    for path, wanted in expected:
        made = read_json(path)
        if made is None or made.get("status") in ("failed", "cut"):  # nothing kept: it is done again anyway
            continue
        diff = differences(made.get("settings") or {}, wanted, defaults)
        if diff:
            found[path] = diff
    return found


def check(out_dir: Path, task_ids: Sequence[str], settings: RunSettings) -> None:
    """Refuse, redo or keep finished work made by other settings (see the module's docstring)."""
    found = stale(out_dir, task_ids, settings)
    if not found:
        return
    tasks = sorted({p.parent.name for p in found})
    if settings.resume == "redo":
        for path in found:
            path.unlink()
        log.warning("resume=redo: %d task(s) made with other settings will be redone: %s", len(tasks), ", ".join(tasks))
        return
    summary = describe(found)
    if settings.resume == "force":
        log.warning("resume=force: keeping %d task(s) made with other settings:\n%s", len(tasks), summary)
        return
    raise ResumeMismatch(
        f"{out_dir} holds finished work for {len(tasks)} task(s) made with other settings:\n{summary}\n"
        "Use a new output directory (hydra.run.dir=...), or resume=redo to redo those tasks, "
        "or resume=force to keep them as they are."
    )


def check_checkpoint(out_dir: Path, settings: RunSettings) -> None:
    """The fine-tuning stage resumes from `checkpoints/last.ckpt` only if the settings that made it
    (in `run.json`) are this run's: refused, redone (the checkpoint deleted) or kept per `resume`."""
    checkpoint, job = RunDir(out_dir).checkpoint, read_json(RunDir(out_dir).run_record)
    if not settings.finetune.resume or not checkpoint.is_file() or job is None:
        return
    wanted = settings.affecting_finetuning()
    diff = differences({k: v for k, v in job["settings"].items() if k in wanted}, wanted, RunSettings().flat())
    if not diff:
        return
    summary = describe({checkpoint.parent: diff})
    if settings.resume == "redo":
        checkpoint.unlink()
        log.warning("resume=redo: fine-tuning starts again (the checkpoint's settings differ):\n%s", summary)
    elif settings.resume == "force":
        log.warning("resume=force: resuming a checkpoint made with other settings:\n%s", summary)
    else:
        raise ResumeMismatch(
            f"{checkpoint} was made with other settings:\n{summary}\nUse a new output directory, or resume=redo "
            "to start again, or resume=force to resume it anyway."
        )


def describe(found: dict[Path, dict[str, tuple[Any, Any]]]) -> str:
    """One line per differing key: old -> new, and which tasks (of how many) it concerns."""
    by_key: dict[str, tuple[tuple[Any, Any], set[str]]] = {}
    for path, diff in found.items():
        if all(old is None for old, _ in diff.values()):
            diff = {"(no settings recorded: made before they were)": (None, None)}
        for key, change in diff.items():
            by_key.setdefault(key, (change, set()))[1].add(path.parent.name)
    lines = []
    for key, ((old, new), tasks) in sorted(by_key.items()):
        names = ", ".join(sorted(tasks)[:5]) + (f" and {len(tasks) - 5} more" if len(tasks) > 5 else "")
        change = "" if key.startswith("(") else f": {old!r} -> {new!r}"
        lines.append(f"  {key}{change} ({names})")
    return "\n".join(lines)


def keep_config(out_dir: Path, config_yaml: str) -> Path:
    """Store this launch's composed config as the next `configs/launch-N.yaml`; return its path."""
    folder = RunDir(out_dir).configs
    folder.mkdir(parents=True, exist_ok=True)
    number = 1 + max((int(p.stem.split("-")[1]) for p in folder.glob("launch-*.yaml")), default=0)
    path = folder / f"launch-{number}.yaml"
    write_text_atomic(path, config_yaml)
    return path
