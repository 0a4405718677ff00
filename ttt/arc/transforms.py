"""Invertible grid transformations, for augmented inference: each has an exact inverse.

The eight symmetries of the square (identity, rotations, flips, transpose, anti-transpose), colour
permutations that keep colour 0 (the background) fixed, and compositions of these.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ttt.arc.grid import Grid, NUM_COLOURS, from_array, to_array
from ttt.arc.task import Task


class Transform(Protocol):
    """A named, invertible map on grids."""

    name: str

    def __call__(self, grid: Grid) -> Grid: ...

    def inverse(self) -> Transform: ...


# The dihedral group D4 as numpy operations (public: the augmenters reuse them).
DIHEDRAL_OPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "rot90": lambda a: np.rot90(a, 1),  # counter-clockwise, as numpy
    "rot180": lambda a: np.rot90(a, 2),
    "rot270": lambda a: np.rot90(a, 3),
    "flip_ud": np.flipud,
    "flip_lr": np.fliplr,
    "transpose": np.transpose,
    "anti_transpose": lambda a: np.rot90(a, 2).T,
}
_DIHEDRAL_INVERSE = {"rot90": "rot270", "rot270": "rot90"}


@dataclass(frozen=True)
class Dihedral:
    """One of the eight symmetries of the square, by name (see `DIHEDRAL_NAMES`)."""

    name: str

    def __post_init__(self):
        if self.name not in DIHEDRAL_OPS:
            raise ValueError(f"unknown symmetry {self.name!r}; choose one of {DIHEDRAL_NAMES}")

    def __call__(self, grid: Grid) -> Grid:
        if self.name == "identity":
            return grid
        return from_array(DIHEDRAL_OPS[self.name](to_array(grid)))

    def inverse(self) -> Dihedral:
        return Dihedral(_DIHEDRAL_INVERSE.get(self.name, self.name))


DIHEDRAL_NAMES = tuple(DIHEDRAL_OPS)


@dataclass(frozen=True)
class ColourPermutation:
    """Recolours cell value c as `mapping[c]`; colour 0 (background) always maps to 0."""

    mapping: tuple[int, ...]

    def __post_init__(self):
        if sorted(self.mapping) != list(range(NUM_COLOURS)) or self.mapping[0] != 0:
            raise ValueError(f"not a permutation of 0-9 fixing 0: {self.mapping}")

    @property
    def name(self) -> str:
        return "colours_" + "".join(map(str, self.mapping))

    @classmethod
    def random(cls, rng: random.Random) -> ColourPermutation:
        """A uniformly random permutation of colours 1-9 (0 fixed)."""
        rest = list(range(1, NUM_COLOURS))
        rng.shuffle(rest)
        return cls((0, *rest))

    def __call__(self, grid: Grid) -> Grid:
        return tuple(tuple(self.mapping[c] for c in row) for row in grid)

    def inverse(self) -> ColourPermutation:
        inverse = [0] * NUM_COLOURS
        for source, target in enumerate(self.mapping):
            inverse[target] = source
        return ColourPermutation(tuple(inverse))


@dataclass(frozen=True)
class Compose:
    """Apply `transforms` left to right; the inverse undoes them right to left."""

    transforms: tuple[Transform, ...]

    @property
    def name(self) -> str:
        return "+".join(t.name for t in self.transforms) or "identity"

    def __call__(self, grid: Grid) -> Grid:
        for transform in self.transforms:
            grid = transform(grid)
        return grid

    def inverse(self) -> Compose:
        return Compose(tuple(t.inverse() for t in reversed(self.transforms)))


def apply_to_task(transform: Transform, task: Task) -> Task:
    """The task with the transform applied to every demonstration and test grid."""
    return task.map(transform)
