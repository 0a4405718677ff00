"""The types a vote works on: a view's answer (`Prediction`) and a distinct grid with the evidence
for it (`Candidate`); `ttt.inference.voting` and `ttt.inference.paper_voting` rank them."""

from __future__ import annotations

from dataclasses import dataclass

from ttt.arc.grid import Grid


@dataclass(frozen=True)
class Prediction:
    """One view's answer, mapped back to the original orientation (grid None: unparseable)."""

    grid: Grid | None
    group: str
    view: str = ""
    logprob: float | None = None


@dataclass
class Candidate:
    """A distinct predicted grid and the evidence for it."""

    grid: Grid
    votes: int
    identity_votes: int
    best_logprob: float
    first_seen: int
    groups: int = 0  # hierarchical: in how many groups' top-k it is

    def key(self, hierarchical: bool) -> tuple:
        primary = (-self.groups, -self.votes) if hierarchical else (-self.votes,)
        return (*primary, -self.identity_votes, -self.best_logprob, self.first_seen)
