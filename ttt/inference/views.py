"""Inference views of a task: an invertible transform of every grid plus an order of demonstrations.

For each configured transform (identity first): the demonstrations in their own order, then
`permutations - 1` random orders (paper: 2 orders per transform), optionally every leave-one-out
subset, optionally extra views composed with random colour permutations. A view's group is its
geometric transform: hierarchical voting takes the top candidates within each group.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ttt.arc.grid import Grid
from ttt.arc.task import Example, Task
from ttt.arc.transforms import ColourPermutation, Compose, Dihedral, Transform

PAPER_TRANSFORMS = ("identity", "transpose", "flip_ud", "flip_lr", "rot90", "rot180", "rot270")


@dataclass(frozen=True)
class View:
    """How one prompt sees the task: `transform` of every grid, demonstrations in `order`."""

    transform: Transform
    group: str  # the geometric transform's name; voting groups by it
    order: tuple[int, ...]  # indices into task.train, in prompt order

    @property
    def name(self) -> str:
        return f"{self.transform.name}/{''.join(map(str, self.order))}"

    def demonstrations(self, task: Task) -> list[Example]:
        return [task.train[i].map(self.transform) for i in self.order]

    def test_input(self, grid: Grid) -> Grid:
        return self.transform(grid)

    def without_last_demonstration(self) -> View:
        return View(self.transform, self.group, self.order[:-1])


def make_views(
    task: Task,
    test_index: int,
    transforms: Sequence[str] = PAPER_TRANSFORMS,
    permutations: int = 2,
    leave_one_out: bool = False,
    colour_permutations: int = 0,
    seed: int = 0,
) -> list[View]:
    """The views of one test input, deterministic in (seed, task id, test index)."""
    rng = random.Random(f"{seed}/{task.id}/{test_index}/views")
    k = len(task.train)
    views: list[View] = []
    for name in transforms:
        geometric = Dihedral(name)
        orders = [tuple(range(k))]
        for _ in range(permutations - 1):
            orders.append(tuple(rng.sample(range(k), k)))
        if leave_one_out and k > 1:
            orders += [tuple(j for j in range(k) if j != i) for i in range(k)]
        for order in dict.fromkeys(orders):  # distinct orders, first-seen first
            views.append(View(geometric, name, order))
        for _ in range(colour_permutations):
            colours = ColourPermutation.random(rng)
            views.append(View(Compose((geometric, colours)), name, tuple(rng.sample(range(k), k))))
    return views
