"""Shape-constrained decoding: only the tokens that keep an answer a well-formed grid.

Unconstrained, a model that has written rows of the right width may not stop: on the paper's
80-task subset the fine-tuned embedded model wrote 30 rows of 30 cells for a 30x30 answer and went
on to a 31st row until it ran out of tokens, or wrote 31 rows of 19; such answers cannot parse, so
the view's vote is lost and a task whose every view did this falls back to its test input
(experiments/long_tasks.md). `ShapeGuard` masks, at each step, every answer token whose text would
break the grid's shape, so a guarded answer always parses:

- every row is as wide as the first, and no row or column passes 30 (`MAX_SIDE`);
- the end marker (and EOS) only after a whole row; after the 30th row nothing else;
- the format's punctuation where it belongs (`paper`: `[[0 0 5]\\n [0 5 0]]`; `compact`: digits
  and one newline per row).

The mask changes which answers are found, never their scores: a kept token keeps the
log-probability the model gives it (no renormalisation over the allowed tokens), so a guarded
answer's probability is the model's probability of that text, comparable with unguarded ones.

A format is a small character automaton over a `Shape` (phase, complete rows, width of the first
row, cells of the current row); a token is allowed when every character of its text is, and the
allowed tokens of a shape are computed once and cached.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ttt.arc.grid import MAX_SIDE


class Shape(NamedTuple):
    """Where a partial answer stands: `phase` (the format's automaton), complete `rows`, the first
    row's `width` (0 until it is complete) and the `cells` of the row being written."""

    phase: str
    rows: int = 0
    width: int = 0
    cells: int = 0

    def cell_fits(self) -> bool:
        return self.rows < MAX_SIDE and self.cells < (self.width or MAX_SIDE)

    def row_full(self) -> bool:
        return self.cells > 0 and self.cells == (self.width or self.cells)

    def row_done(self) -> Shape:
        return Shape(self.phase, self.rows + 1, self.width or self.cells, 0)


def _compact(shape: Shape, ch: str) -> Shape | None:
    """`compact`: rows of digits, each ended by a newline (`005\\n050\\n`)."""
    if ch.isdigit():
        return shape._replace(cells=shape.cells + 1) if shape.cell_fits() else None
    if ch == "\n" and shape.row_full():
        return shape.row_done()
    return None


def _paper(shape: Shape, ch: str) -> Shape | None:
    """`paper`: numpy-style rows, `[[0 0 5]\\n [0 5 0]]`."""
    phase = shape.phase
    if phase == "start" and ch == "[":
        return shape._replace(phase="grid")
    if phase in ("grid", "indent") and ch == "[":
        return shape._replace(phase="cell")
    if phase == "cell" and ch.isdigit() and shape.cell_fits():
        return shape._replace(phase="digit", cells=shape.cells + 1)
    if phase == "digit" and ch == " " and shape.cell_fits():
        return shape._replace(phase="cell")
    if phase == "digit" and ch == "]" and shape.row_full():
        return shape.row_done()._replace(phase="row")
    if phase == "row" and ch == "\n" and shape.rows < MAX_SIDE:
        return shape._replace(phase="newline")
    if phase == "newline" and ch == " ":
        return shape._replace(phase="indent")
    if phase == "row" and ch == "]":
        return shape._replace(phase="closed")
    return None


# Per format: (the automaton, its first phase, whether a shape may end the answer).
GRAMMARS = {
    "compact": (_compact, "row", lambda s: (s.rows > 0 and s.cells == 0) or s.row_full()),
    "paper": (_paper, "start", lambda s: s.phase == "closed"),
}


class ShapeGuard:
    """The answer tokens allowed after a partial answer, and the shape each one leads to."""

    def __init__(self, format_name: str, pieces: list[str], stops: list[bool], end_marker: str):
        if format_name not in GRAMMARS:
            raise ValueError(f"inference.constrain_shape: no grid grammar for format {format_name!r} ({sorted(GRAMMARS)})")
        self.step, first, self.can_end = GRAMMARS[format_name]
        self.start = Shape(first)
        self.pieces, self.stops, self.end_marker = pieces, stops, end_marker
        self._next: dict[Shape, list[Shape | None]] = {}
        self._masks: dict[Shape, torch.Tensor] = {}

    def after(self, shape: Shape, index: int) -> Shape | None:
        """The shape after answer token `index`, or None if it is not allowed there."""
        return self._successors(shape)[index]

    def allowed(self, shapes: list[Shape]) -> torch.Tensor:
        """(len(shapes), answer tokens) bool: the tokens each partial answer may take next."""
        for shape in shapes:
            if shape not in self._masks:
                self._masks[shape] = torch.tensor([s is not None for s in self._successors(shape)])
        return torch.stack([self._masks[s] for s in shapes])

    def _successors(self, shape: Shape) -> list[Shape | None]:
        """The shape after each answer token (None: refused), computed once per shape."""
        if shape not in self._next:
            self._next[shape] = [self._advance(shape, i) for i in range(len(self.pieces))]
        return self._next[shape]

    def _advance(self, shape: Shape, index: int) -> Shape | None:
        if self.stops[index]:
            return self._end(shape)
        text = self.pieces[index]
        if not text:
            return None
        for ch in text:
            if shape.phase == "done":
                return None
            if ch == self.end_marker:
                shape = self._end(shape)
            else:
                shape = self.step(shape, ch)
            if shape is None:
                return None
        return shape

    def _end(self, shape: Shape) -> Shape | None:
        """The finished answer's shape (its last row counted), if it may end here."""
        if not self.can_end(shape):
            return None
        return (shape.row_done() if shape.cells else shape)._replace(phase="done")
