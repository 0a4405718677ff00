"""A run's numbers: one task's row of results.json from its records, and the run's summary
(metrics.json) from the rows. Read by the run's outputs (`ttt.report`: summarize, merge) and by its
page (`ttt.html_report`)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ttt.selection_rules import SCORE_KEYS, SELECTIONS, score_key


def rounded_mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values present, to 4 decimals; None when none is."""
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else None


def task_row(task_id: str, prediction: dict | None, ttt: dict | None, level: str | None = None) -> dict:
    """One task's row of results.json (without its attempts) from its predictions.json and ttt.json
    (either may be None: not predicted, not adapted); `level`: its label in `data.levels`."""
    heldout = (prediction or {}).get("heldout") or {}
    by_base = (prediction or {}).get("predicted_by") == "base"
    base_nll = ttt.get("base_nll") if ttt and ttt.get("base_nll") is not None else (
        heldout.get("nll") if by_base else None)  # fmt: skip
    ttt_nll = ttt.get("ttt_nll") if ttt else None
    predicted_views = sum(t["num_predictions"] for t in prediction.get("tests", [])) if prediction else 0
    return {
        "task_id": task_id,
        "level": level,
        "ttt_status": ttt["status"] if ttt else None,
        "ttt_error": ttt.get("error") if ttt else None,  # why TTT failed (the base model predicted)
        "ttt_seconds": ttt["seconds"] if ttt else None,
        "ttt_examples": ttt.get("num_examples") if ttt else None,  # TTT samples (one epoch)
        "ttt_tokens": ttt.get("num_tokens") if ttt else None,  # their tokens (one epoch)
        "ttt_final_loss": ttt.get("final_loss") if ttt else None,  # mean loss of the last epoch
        # held-out NLL per answer token before and after TTT (ttt.inference.heldout)
        "heldout_target": (ttt or {}).get("heldout_target") or heldout.get("target"),
        "base_nll": base_nll,
        "ttt_nll": ttt_nll,
        "nll_drop": round(base_nll - ttt_nll, 4) if base_nll is not None and ttt_nll is not None else None,
        "base_end_prob": ttt.get("base_end_prob") if ttt else (heldout.get("end_prob") if by_base else None),
        "ttt_end_prob": ttt.get("ttt_end_prob") if ttt else None,
        "lora_update_norm": ttt.get("lora_update_norm") if ttt else None,
        "parse_rate": round(sum(t["num_parsed"] for t in prediction["tests"]) / predicted_views, 4)
        if predicted_views else None,
        "predicted": prediction is not None and prediction.get("predicted", True),
        # pass@2 had the attempts been chosen by the other selection rules (None: not computed)
        **{score_key(rule): ((prediction or {}).get("score_by_rule") or {}).get(rule) for rule in SELECTIONS if rule != "vote"},
        "answers_per_view": prediction.get("answers_per_view") if prediction else None,
        # demonstrations left out of views whose prompt was over data.max_seq_len
        "demonstrations_dropped": prediction.get("demonstrations_dropped") if prediction else None,
        **{k: prediction.get(k) if prediction else None
           for k in ("score", "vote_score", "oracle", "view_accuracy", "num_views", "seconds")},
        # why the task's TTT or inference stopped early (run.deadline); None: neither did
        "cut_short": "; ".join(c for c in ((ttt or {}).get("cut_short"), (prediction or {}).get("cut_short")) if c) or None,
        # this process's resident memory after the task, and its peak so far (MiB; ttt.host_memory)
        "rss_mib": prediction.get("rss_mib") if prediction else None,
        "peak_rss_mib": prediction.get("peak_rss_mib") if prediction else None,
        "all_solved": None if not prediction or prediction["score"] is None else prediction["score"] == 1.0,
    }  # fmt: skip


def metrics_from_rows(rows: Sequence[dict], levels: Sequence[str] = ()) -> dict:
    """The run's summary from its per-task rows (also used to merge shards); `levels`: the order to
    give the levels in (data.levels'), else the order the rows show them in."""
    scored = [r for r in rows if r["score"] is not None]
    return {
        **scores(rows),
        # pass@2 with each selection rule's attempts (vote_score, score_poe, ...; None: not scored)
        **{key: rounded_mean([r.get(key) for r in scored]) for key in SCORE_KEYS},
        "view_accuracy": rounded_mean([r["view_accuracy"] for r in scored]),
        "parse_rate": rounded_mean([r.get("parse_rate") for r in rows]),  # answers that parsed into a grid
        "answers_per_view": rounded_mean([r.get("answers_per_view") for r in rows]),  # greedy: 1; dfs: 0 or more
        "base_nll": rounded_mean([r.get("base_nll") for r in rows]),  # held-out NLL per token, before TTT
        "ttt_nll": rounded_mean([r.get("ttt_nll") for r in rows]),  # ... after TTT
        "nll_lowered": sum((r.get("nll_drop") or 0) > 0 for r in rows),  # tasks whose held-out NLL TTT lowered
        "nll_measured": sum(r.get("nll_drop") is not None for r in rows),
        "ttt_done": sum(r["ttt_status"] == "done" for r in rows),  # tasks predicted by their adapted model
        "ttt_failed": sum(r["ttt_status"] == "failed" for r in rows),  # ... by the base model instead
        "ttt_errors": {r["task_id"]: r.get("ttt_error") for r in rows if r["ttt_status"] == "failed"},
        "not_predicted": sum(not r["predicted"] for r in rows),
        "ttt_seconds": round(sum(r["ttt_seconds"] or 0 for r in rows), 1),
        "ttt_tokens": sum(r.get("ttt_tokens") or 0 for r in rows),  # every task's TTT samples' tokens (one epoch)
        "inference_seconds": round(sum(r["seconds"] or 0 for r in rows), 1),
        "demonstrations_dropped": sum(r.get("demonstrations_dropped") or 0 for r in rows),  # over max_seq_len
        "cut_short": sum(bool(r.get("cut_short")) for r in rows),  # tasks run.deadline cut short
        "peak_rss_mib": max((r.get("peak_rss_mib") or 0 for r in rows), default=0) or None,  # the run's peak resident memory
        "rss_growth_mib": rss_growth(rows),  # resident memory's creep over the run's second half: flat is ~0
        "by_level": by_level(rows, levels),  # {level: its scores} for tasks labelled by data.levels ({} without)
    }


def rss_growth(rows: Sequence[dict]) -> float | None:
    """How much resident memory crept up over the second half of the run: the last task's less the
    highest after any task of the first half (MiB, tasks in run order). A larger task raises the
    resident memory once (the allocator keeps what it freed); a leak keeps raising it. None with
    fewer than two samples."""
    samples = [r["rss_mib"] for r in rows if r.get("rss_mib") is not None]
    if len(samples) < 2:
        return None
    return round(samples[-1] - max(samples[: len(samples) // 2]), 1)


def scores(rows: Sequence[dict]) -> dict:
    """How many tasks there were, were scored and were solved, and the mean scores."""
    scored = [r for r in rows if r["score"] is not None]
    return {
        "num_tasks": len(rows),
        "num_scored": len(scored),
        "score": rounded_mean([r["score"] for r in scored]),  # mean official pass@2 score over scored tasks
        "tasks_solved": sum(r["score"] for r in scored),
        "all_solved": rounded_mean([float(r["all_solved"]) for r in scored]),  # the paper code's criterion
        "oracle": rounded_mean([r["oracle"] for r in scored]),  # right answer among any candidate
    }


def by_level(rows: Sequence[dict], order: Sequence[str] = ()) -> dict[str, dict]:
    """`scores` of each level's tasks: the levels of `order` that have tasks, then any other in the
    order the rows show them."""
    present = [r.get("level") for r in rows if r.get("level") is not None]
    levels = [level for level in dict.fromkeys([*order, *present]) if level in present]
    return {level: scores([r for r in rows if r.get("level") == level]) for level in levels}
