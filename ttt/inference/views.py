"""Inference views of a task: an invertible transform of every grid plus an order of demonstrations.

For each configured transform (identity first): the demonstrations in their own order, then
`permutations - 1` random orders (paper: 2 orders per transform), optionally every leave-one-out
subset, optionally extra views composed with random colour permutations. A view's group is its
geometric transform: hierarchical voting takes the top candidates within each group.

`make_paper_views` is the reference code's layout instead (`inference.views=paper`;
ekinakyurek/marc `inference/preprocess.py`): every way to leave `include_n` demonstrations out,
each in its own order and `permute_n` random ones, duplicates removed; then one view each under
transpose, flip_ud, flip_lr, rot90 and rot180, each made from a randomly drawn one of those
untransformed views (skipped if it equals one of them).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ttt.arc.grid import Grid
from ttt.arc.task import Example, Task
from ttt.arc.transforms import ColourPermutation, Compose, Dihedral, Transform

PAPER_TRANSFORMS = ("identity", "transpose", "flip_ud", "flip_lr", "rot90", "rot180", "rot270")
REFERENCE_VIEW_TRANSFORMS = ("transpose", "flip_ud", "flip_lr", "rot90", "rot180")  # in the reference's order


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


def make_paper_views(task: Task, test_index: int, include_n: int = 1, permute_n: int = 2, seed: int = 0) -> list[View]:
    """The reference's views of one test input with `include_n` demonstrations left out of each.

    Randomness is the reference's `RandomState(seed)`, made afresh per call. The reference draws
    the view each transform is made from out of a Python set of tasks, whose order changes from
    run to run; here it is drawn from the distinct views in first-seen order, so the counts of
    views, per transform and per number of demonstrations are the reference's, the draws are not.
    """
    rng = np.random.RandomState(seed)
    k = len(task.train)
    identity = Dihedral("identity")
    orders: list[tuple[int, ...]] = []
    for left_out in itertools.combinations(range(k), include_n):
        kept = tuple(j for j in range(k) if j not in left_out)
        orders.append(kept)
        orders += [tuple(kept[i] for i in rng.permutation(len(kept))) for _ in range(permute_n)]
    test_input = task.test[test_index].input
    plain: list[View] = []
    seen: set[tuple] = set()
    for order in orders:  # the reference removes views that show the same, not just equal orders
        view = View(identity, "identity", order)
        if (shown := _shown(task, view, test_input)) not in seen:
            seen.add(shown)
            plain.append(view)
    views = list(plain)
    for name in REFERENCE_VIEW_TRANSFORMS:
        source = plain[rng.choice(len(plain))]
        view = View(Dihedral(name), name, source.order)
        shown = _shown(task, view, test_input)
        if shown not in seen:  # a symmetric task: this view shows what an untransformed one does
            seen.add(shown)
            views.append(view)
    return views


def _shown(task: Task, view: View, test_input: Grid) -> tuple:
    """What a view puts in its prompt: its demonstrations and its test input."""
    return (tuple(view.demonstrations(task)), view.test_input(test_input))
