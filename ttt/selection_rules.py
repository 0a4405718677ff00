"""The selection rules: how a test input's two attempts are chosen from its pooled candidates
(`inference.selection`; what each rule does: `ttt.inference.predict`).

The one home for their names. The config's choices, the metric keys (`metrics.json`, `results.json`,
`objective=`), the console line, the report page, `python -m ttt.gather`'s columns and W&B all come
from `SELECTIONS`, so a new rule is added here once.
"""

from __future__ import annotations

from collections.abc import Mapping

SELECTIONS = ("vote", "poe", "nvarc", "confidence")  # the paper's vote first
RESCORED = ("poe", "nvarc")  # the rules that score candidates again under `inference.poe_views` views


def score_key(rule: str) -> str:
    """The metric key of pass@2 had the attempts been chosen by `rule` (whichever rule chose them,
    `score` is the run's own). `vote_score` keeps the name it had before there were other rules."""
    return "vote_score" if rule == "vote" else f"score_{rule}"


SCORE_KEYS = tuple(score_key(rule) for rule in SELECTIONS)


def rule_scores(metrics: Mapping) -> list[tuple[str, float]]:
    """(rule, pass@2) for every rule the run scored, in `SELECTIONS` order (a rule that rescores is
    scored only when the run chose it)."""
    return [(rule, metrics[score_key(rule)]) for rule in SELECTIONS if metrics.get(score_key(rule)) is not None]
