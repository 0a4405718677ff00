"""Grids: immutable, hashable tuples of rows of colours 0-9.

Immutability lets grids be dictionary keys (voting, deduplication); numpy does the geometry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Grid = tuple[tuple[int, ...], ...]

MAX_SIDE = 30  # ARC grids are 1x1 to 30x30
NUM_COLOURS = 10  # cells are colours 0-9


def from_array(array: np.ndarray) -> Grid:
    """A 2-D integer array as a grid."""
    return tuple(tuple(int(c) for c in row) for row in array.tolist())


def from_rows(rows: Any) -> Grid:
    """Rows as JSON holds them (lists of colours) as a grid; not checked (`grid_problem` does that)."""
    return tuple(tuple(row) for row in rows)


def to_rows(grid: Grid) -> list[list[int]]:
    """A grid as JSON holds it (lists of colours): the inverse of `from_rows`."""
    return [list(row) for row in grid]


def to_array(grid: Grid) -> np.ndarray:
    """A grid as a 2-D int64 array (shape (0, 0) for an empty grid)."""
    return np.array(grid, dtype=np.int64).reshape(len(grid), len(grid[0]) if grid else 0)


def shape(grid: Grid) -> tuple[int, int]:
    """(height, width)."""
    return len(grid), len(grid[0]) if grid else 0


def fits(grid: Grid, max_side: int = MAX_SIDE) -> bool:
    """Whether the grid is within ARC's size limit."""
    height, width = shape(grid)
    return height <= max_side and width <= max_side


def grid_problem(rows: Any) -> str | None:
    """What is wrong with raw JSON rows as an ARC grid, or None if they are a valid grid."""
    if not isinstance(rows, list):
        return f"expected a list of rows, got {type(rows).__name__}"
    if not rows:
        return "empty grid (no rows)"
    for r, row in enumerate(rows):
        if not isinstance(row, list):
            return f"row {r} is {type(row).__name__}, not a list of cells"
    width = len(rows[0])
    if width == 0:
        return "empty grid (row 0 has no cells)"
    for r, row in enumerate(rows):
        if len(row) != width:
            return f"ragged rows: row {r} has {len(row)} cells, row 0 has {width}"
        for c, cell in enumerate(row):
            if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell < NUM_COLOURS:
                return f"cell ({r}, {c}) is {cell!r}, not a colour 0-9"
    if len(rows) > MAX_SIDE or width > MAX_SIDE:
        return f"grid is {len(rows)}x{width}, larger than {MAX_SIDE}x{MAX_SIDE}"
    return None
