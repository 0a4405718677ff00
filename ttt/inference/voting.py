"""Voting predictions of many views into two attempts (pure Python, deterministic).

Hierarchical (the paper's): within each transform group rank the distinct predictions and keep the
top 3; then rank every candidate that made a group's top 3 and take the global top 2.
Flat (ablation): rank all predictions together.
Paper: the reference code's own vote, for parity (`ttt.inference.paper_voting`: a top 3 for the
pool of all answers too, majority-grid fillers, a count-only final top 2 that may repeat a grid).
Hierarchical differs from it in three ways: it ranks by how many groups' top 3 hold a grid (then
votes, identity votes, log-probability, first appearance) where the reference counts a grid's
appearances in the pooled top-3 lists; it never invents a grid no view produced; its two
attempts are always distinct.

Ranking and tie-breaking, in order (documented and tested):
1. more votes (global level: the number of groups whose top 3 hold it, then its total votes);
2. more votes in the identity group (the paper's code prefers what the untransformed view says);
3. higher best log-probability of any view that produced it (None counts as -inf);
4. the earlier first appearance in the prediction list (views are ordered identity first).
Fewer than two candidates: the attempts are filled with a 1x1 grid of 0 (then of 1), so there are
always exactly two distinct attempts; the test input itself is a fallback only when no view
produced a grid at all (it is never an attempt beside a candidate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ttt.arc.grid import Grid
from ttt.inference.candidates import Candidate, Prediction
from ttt.inference.paper_voting import paper_attempts

IDENTITY = "identity"
VOTING_RULES = ("hierarchical", "flat", "paper")  # inference.voting


def candidates(predictions: Sequence[Prediction]) -> list[Candidate]:
    """Distinct parsed grids with their votes, in first-seen order."""
    by_grid: dict[Grid, Candidate] = {}
    for index, prediction in enumerate(predictions):
        if prediction.grid is None:
            continue
        logprob = -math.inf if prediction.logprob is None else prediction.logprob
        candidate = by_grid.get(prediction.grid)
        if candidate is None:
            candidate = by_grid[prediction.grid] = Candidate(prediction.grid, 0, 0, -math.inf, index)
        candidate.votes += 1
        candidate.identity_votes += prediction.group == IDENTITY
        candidate.best_logprob = max(candidate.best_logprob, logprob)
    return list(by_grid.values())


def rank_flat(predictions: Sequence[Prediction]) -> list[Candidate]:
    """All candidates, best first, by votes over all views."""
    return sorted(candidates(predictions), key=lambda c: c.key(hierarchical=False))


def rank_hierarchical(predictions: Sequence[Prediction], top_k: int = 3) -> list[Candidate]:
    """Candidates in some group's top `top_k`, ranked across groups; then the rest, flat."""
    overall = {c.grid: c for c in candidates(predictions)}
    groups = list(dict.fromkeys(p.group for p in predictions))
    for group in groups:
        in_group = [p for p in predictions if p.group == group]
        for candidate in rank_flat(in_group)[:top_k]:
            overall[candidate.grid].groups += 1
    return sorted(overall.values(), key=lambda c: c.key(hierarchical=True))


def attempts(ranked: Sequence[Candidate], test_input: Grid, count: int = 2) -> list[Grid]:
    """The first `count` ranked grids, filled with fallbacks to exactly `count` distinct grids."""
    chosen: list[Grid] = []
    fallbacks = [((0,),), ((1,),)] if ranked else [test_input, ((0,),), ((1,),)]
    for grid in [c.grid for c in ranked] + fallbacks:
        if grid not in chosen:
            chosen.append(grid)
        if len(chosen) == count:
            break
    return chosen


def vote(
    predictions: Sequence[Prediction], test_input: Grid, method: str = "hierarchical", top_k: int = 3
) -> tuple[list[Grid], list[Candidate]]:
    """(two attempts, ranked candidates) by `hierarchical`, `flat` or `paper` voting (whose
    candidates are ranked hierarchically for the record)."""
    if method in ("hierarchical", "paper"):
        ranked = rank_hierarchical(predictions, top_k)
    elif method == "flat":
        ranked = rank_flat(predictions)
    else:
        raise ValueError(f"inference.voting={method!r}: choose one of {VOTING_RULES}")
    if method == "paper" and (chosen := paper_attempts(predictions)):
        return chosen, ranked
    return attempts(ranked, test_input), ranked
