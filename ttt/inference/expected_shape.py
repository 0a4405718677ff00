"""The test output's height and width, where the demonstrations determine it.

Each side (height, width) is predicted on its own by the first rule every demonstration obeys:

- `ratio`: the output's side is a fixed multiple or fraction of the input's side (1: the same
  size; 2, 3: upscaled; 1/2, 1/3: cut down), for every demonstration;
- `constant`: every demonstration's output has that side's length.

`ratio` is tried first: when every demonstration input has one size the two rules agree on the
demonstrations and differ only on a test input of another size, and on ARC-AGI-1's training tasks
`ratio` is right more often there (experiments/inference_bounds.md measures both orders).
A side no rule explains is left open (None), and so is any prediction past the 30-cell limit.

Decoding uses the shape to stop an answer as soon as it cannot have it (a row of the wrong width,
a row past the last: `TextFormat.hopeless`), which is where the time of runaway answers goes
(`inference.expected_shape`). An answer of another shape can still be right when the rule is
wrong for a task; how often that is, is measured on the training tasks, not assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from ttt.arc.grid import MAX_SIDE, Grid, shape
from ttt.arc.task import Example

RULES = ("ratio", "constant")  # tried in this order per side
EXPECTED_SHAPE_MODES = ("any", "stop")  # inference.expected_shape


def side_rule(pairs: Sequence[tuple[int, int]], test_side: int, order: Sequence[str] = RULES) -> tuple[str, int] | None:
    """(rule, predicted length) of one side from (input length, output length) per demonstration."""
    for rule in order:
        if rule == "ratio":
            ratios = {Fraction(out, inp) for inp, out in pairs}
            if len(ratios) == 1:
                predicted = test_side * ratios.pop()
                if predicted.denominator == 1:
                    return rule, int(predicted)
        elif rule == "constant":
            lengths = {out for _, out in pairs}
            if len(lengths) == 1:
                return rule, lengths.pop()
    return None


def expected_shape(
    demonstrations: Sequence[Example], test_input: Grid, order: Sequence[str] = RULES
) -> tuple[int | None, int | None]:
    """(height, width) of the test output where the demonstrations fix it; None for a side they don't."""
    shapes = [(shape(d.input), shape(d.output)) for d in demonstrations if d.output is not None]
    test = shape(test_input)
    sides: list[int | None] = []
    for axis in (0, 1):
        found = side_rule([(i[axis], o[axis]) for i, o in shapes], test[axis], order) if shapes else None
        sides.append(found[1] if found and 1 <= found[1] <= MAX_SIDE else None)
    return sides[0], sides[1]
