"""The paper's training augmenters: named, seeded, composable transformations of a whole task.

Unlike `transforms`, these need not be invertible (reflect, upscale, tile): they only make more
TTT data. Each acts on every grid of a synthetic task the same way; the random ones (translate)
draw their parameters once per task from the `random.Random` they are given. A config names
augmenters by registry name; `a+b` chains them (apply a, then b).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ttt.arc.grid import from_array, to_array
from ttt.arc.task import Example
from ttt.arc.transforms import DIHEDRAL_OPS


class Augmenter(Protocol):
    """A named map from a synthetic task's examples to augmented examples."""

    name: str

    def __call__(self, examples: Sequence[Example], rng: random.Random) -> tuple[Example, ...]: ...


@dataclass(frozen=True)
class GridMap:
    """The same deterministic array operation on every grid of the task."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]

    def __call__(self, examples: Sequence[Example], rng: random.Random) -> tuple[Example, ...]:
        return tuple(e.map(lambda g: from_array(self.fn(to_array(g)))) for e in examples)


@dataclass(frozen=True)
class Translate:
    """Roll every grid by the same (rows, cols) shift, each drawn from 1..max_shift per task."""

    max_shift: int = 3  # paper: shifts of 1-3 cells
    name: str = "translate"

    def __call__(self, examples: Sequence[Example], rng: random.Random) -> tuple[Example, ...]:
        shift = (rng.randint(1, self.max_shift), rng.randint(1, self.max_shift))
        return tuple(e.map(lambda g: from_array(np.roll(to_array(g), shift, axis=(0, 1)))) for e in examples)


@dataclass(frozen=True)
class Chain:
    """Apply `augmenters` left to right."""

    augmenters: tuple[Augmenter, ...]

    @property
    def name(self) -> str:
        return "+".join(a.name for a in self.augmenters)

    def __call__(self, examples: Sequence[Example], rng: random.Random) -> tuple[Example, ...]:
        result = tuple(examples)
        for augmenter in self.augmenters:
            result = augmenter(result, rng)
        return result


def _ops() -> dict[str, Augmenter]:
    ops: dict[str, Augmenter] = {
        name: GridMap(name, fn)
        for name, fn in DIHEDRAL_OPS.items()
        if name in ("rot90", "rot180", "rot270", "flip_ud", "flip_lr", "transpose")
    }
    more = {
        # reflect: the grid joined with its mirror image, along either axis, on either side
        "reflect_right": lambda a: np.concatenate([a, np.fliplr(a)], axis=1),
        "reflect_left": lambda a: np.concatenate([np.fliplr(a), a], axis=1),
        "reflect_down": lambda a: np.concatenate([a, np.flipud(a)], axis=0),
        "reflect_up": lambda a: np.concatenate([np.flipud(a), a], axis=0),
        # increase resolution: each cell becomes 2x2, 2x1 (height) or 1x2 (width)
        "upscale2": lambda a: np.kron(a, np.ones((2, 2), dtype=a.dtype)),
        "upscale_height2": lambda a: np.repeat(a, 2, axis=0),
        "upscale_width2": lambda a: np.repeat(a, 2, axis=1),
        # tile: the grid repeated twice down, across, or both
        "tile_down2": lambda a: np.tile(a, (2, 1)),
        "tile_right2": lambda a: np.tile(a, (1, 2)),
        "tile_both2": lambda a: np.tile(a, (2, 2)),
    }
    ops.update({name: GridMap(name, fn) for name, fn in more.items()})
    ops["translate"] = Translate()
    return ops


REGISTRY: dict[str, Augmenter] = _ops()

# The paper's 23 training augmenters (METHOD.md section 3), the default `ttt.augmenters`.
PAPER_AUGMENTERS: tuple[str, ...] = (
    "rot90", "rot180", "rot270", "flip_ud", "flip_lr", "transpose",
    "reflect_right", "reflect_left", "reflect_down", "reflect_up",
    "translate",
    "upscale2", "upscale_height2", "upscale_width2",
    "rot90+upscale2", "rot180+upscale2", "rot270+upscale2",
    "flip_ud+upscale2", "flip_lr+upscale2", "transpose+upscale2",
    "tile_down2", "tile_right2", "tile_both2",
)  # fmt: skip


def build_augmenter(name: str) -> Augmenter:
    """The augmenter registered as `name`, or the chain `a+b+...` of registered ones."""
    parts = name.split("+")
    unknown = [p for p in parts if p not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown augmenter {unknown[0]!r} in {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name] if len(parts) == 1 else Chain(tuple(REGISTRY[p] for p in parts))


def build_augmenters(names: Sequence[str]) -> list[Augmenter]:
    """Augmenters for a config list of names (`PAPER_AUGMENTERS` for the paper's set)."""
    return [build_augmenter(name) for name in names]
