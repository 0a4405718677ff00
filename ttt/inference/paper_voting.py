"""The reference code's vote (`inference.voting=paper`; ekinakyurek/marc `arclib/voting.py`),
re-implemented for parity with the paper's checkpoints and numbers.

1. Predictions are pooled per category: each inverse transform (the reference names a rot90 view's
   group by its inverse, `Rotate(270)`), and `all` (every prediction, category by category).
2. For `all`, identity, transpose, flip_ud, flip_lr, rot180 and rot90 (in that order; other groups,
   e.g. rot270, count only in `all`) the top 3 grids by count. A category with fewer than 3
   distinct grids fills its slots with the row-wise majority grid (each row the most common row of
   the most common shape), else the column-wise one; so a filler may be a grid no view produced,
   and the same grid may fill two slots.
3. The top 3 of that candidate list by count; if the 2nd and 3rd are tied, the one the identity
   views voted for more becomes the 2nd (the 3rd when equal). The attempts are the top 2, which
   may be the same grid twice.
Exact ties fall to the order of Python sets of grid tuples and numpy's argsort, as in the
reference: the same data structures are used here, so the order is the same (grids of ints hash
the same in every process).
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np

from ttt.arc.grid import Grid
from ttt.inference.candidates import Prediction

# A view group's (the view's transform) name for its inverse in the reference.
REFERENCE_CATEGORY = {
    "identity": "identity", "transpose": "Transpose()", "flip_ud": "Flip(0)", "flip_lr": "Flip(1)",
    "rot90": "Rotate(270)", "rot180": "Rotate(180)", "rot270": "Rotate(90)",
}  # fmt: skip
VOTED_CATEGORIES = ("all", "identity", "Transpose()", "Flip(0)", "Flip(1)", "Rotate(180)", "Rotate(270)")


def majority_grid(grids: Sequence[Grid], by_columns: bool = False) -> Grid:
    """Row by row (or column by column), the most common row among grids of the most common shape."""
    if by_columns:
        grids = [tuple(zip(*g)) for g in grids]
    shapes = [(len(g), len(g[0])) for g in grids]
    height, width = max(set(shapes), key=shapes.count)
    rows = []
    for r in range(height):
        seen = [g[r] for g in grids if len(g) > r and len(g[r]) == width]
        rows.append(max(set(seen), key=seen.count))
    return tuple(zip(*rows)) if by_columns else tuple(rows)


def top_three(grids: Sequence[Grid]) -> tuple[Grid, Grid, Grid] | None:
    """The three most common grids, slots without a distinct grid filled by majority grids."""
    if not grids:
        return None
    distinct = list(set(grids))
    counts = [grids.count(g) for g in distinct]
    order = np.argsort(counts)
    first = second = third = distinct[int(np.argmax(counts))]
    if len(distinct) > 1:
        second = distinct[order[-2]]
    if len(distinct) > 2:
        third = distinct[order[-3]]
    by_rows, by_columns = majority_grid(grids), majority_grid(grids, by_columns=True)
    if second == first:
        second = by_rows if by_rows != first else by_columns
    if third in (first, second):
        third = by_rows if by_rows not in (first, second) else by_columns
    return first, second, third


def paper_attempts(predictions: Sequence[Prediction]) -> list[Grid]:
    """The reference's two attempts (possibly one grid twice); [] when no view produced a grid."""
    by_category: dict[str, list[Grid]] = {}
    for p in predictions:
        if p.grid is not None:
            by_category.setdefault(REFERENCE_CATEGORY.get(p.group, p.group), []).append(p.grid)
    by_category["all"] = [g for grids in by_category.values() for g in grids]
    pool = [g for c in VOTED_CATEGORIES if c in by_category for g in top_three(by_category[c]) or ()]
    best = top_three(pool)
    if best is None:
        return []
    first, second, third = best
    if pool.count(second) == pool.count(third) and "identity" in by_category:  # the reference's tie-break
        identity = by_category["identity"]
        second = second if identity.count(second) > identity.count(third) else third
    return [first, second]
