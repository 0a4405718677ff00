"""A plain SVG chart for the plotting scripts of `experiments/` (drawsvg, no matplotlib): a white
canvas with a title, x and y axes (x linear or log), ticks, axis labels, marks with hover titles,
polylines and a legend. Scripts import it from beside them (`from svg_axes import Axes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import drawsvg

WIDTH, HEIGHT, MARGIN = 720, 440, 60
MARKS = ("circle", "square", "triangle")  # one per run, in order


def nice_step(span: float) -> float:
    """A tick step of 1, 2 or 5 times a power of ten giving at most 10 ticks over `span`."""
    power = 10 ** math.floor(math.log10(span)) if span > 0 else 1
    for mantissa in (0.1, 0.2, 0.5, 1, 2, 5, 10):
        if span / (mantissa * power) <= 10:
            return mantissa * power
    return 10 * power


class Axes:
    """Data coordinates -> canvas; the axes are drawn at construction, marks and lines after."""

    def __init__(self, title: str, x_label: str, y_label: str, x_range: tuple[float, float],
                 y_range: tuple[float, float], x_log: bool = False):  # fmt: skip
        self.x_log = x_log
        self.x_lo, self.x_hi = (math.log10(v) for v in x_range) if x_log else x_range
        self.y_lo, self.y_hi = y_range
        self.drawing = d = drawsvg.Drawing(WIDTH, HEIGHT, font_family="sans-serif", font_size=12)
        d.append(drawsvg.Rectangle(0, 0, WIDTH, HEIGHT, fill="white"))
        bottom = HEIGHT - MARGIN
        d.append(drawsvg.Line(MARGIN, bottom, WIDTH - MARGIN, bottom, stroke="black"))
        d.append(drawsvg.Line(MARGIN, MARGIN, MARGIN, bottom, stroke="black"))
        for value in self._x_ticks():
            d.append(drawsvg.Line(self.px(value), bottom, self.px(value), bottom + 4, stroke="black"))
            d.append(drawsvg.Text(f"{value:g}", 11, self.px(value), bottom + 16, text_anchor="middle"))
        step = nice_step(self.y_hi - self.y_lo)
        for k in range(math.ceil(self.y_lo / step - 1e-9), math.floor(self.y_hi / step + 1e-9) + 1):
            value = round(k * step, 10)
            d.append(drawsvg.Line(MARGIN - 4, self.py(value), MARGIN, self.py(value), stroke="black"))
            d.append(drawsvg.Text(f"{value:g}", 11, MARGIN - 6, self.py(value) + 4, text_anchor="end"))
        d.append(drawsvg.Text(x_label, 12, WIDTH / 2, HEIGHT - 18, text_anchor="middle"))
        d.append(drawsvg.Text(y_label, 12, 16, HEIGHT / 2, text_anchor="middle", transform=f"rotate(-90 16 {HEIGHT / 2})"))
        d.append(drawsvg.Text(title, 14, WIDTH / 2, 24, text_anchor="middle"))

    def _x_ticks(self) -> list[float]:
        if not self.x_log:
            step = nice_step(self.x_hi - self.x_lo)
            return [round(k * step, 10) for k in range(math.ceil(self.x_lo / step), math.floor(self.x_hi / step) + 1)]
        values = (m * 10**p for p in range(math.floor(self.x_lo), math.ceil(self.x_hi) + 1) for m in (1, 2, 5))
        return [v for v in values if self.x_lo <= math.log10(v) <= self.x_hi]

    def px(self, x: float) -> float:
        x = math.log10(x) if self.x_log else x
        return MARGIN + (x - self.x_lo) / (self.x_hi - self.x_lo) * (WIDTH - 2 * MARGIN)

    def py(self, y: float) -> float:
        return HEIGHT - MARGIN - (y - self.y_lo) / (self.y_hi - self.y_lo) * (HEIGHT - 2 * MARGIN)

    def mark(self, shape: str, x: float, y: float, colour: str, title: str, canvas: bool = False) -> None:
        """A mark at data (x, y), or at canvas (x, y) with `canvas`; `title` shows on hover."""
        if not canvas:
            x, y = self.px(x), self.py(y)
        if shape == "circle":
            mark = drawsvg.Circle(x, y, 4, fill=colour, fill_opacity=0.7)
        elif shape == "square":
            mark = drawsvg.Rectangle(x - 4, y - 4, 8, 8, fill=colour, fill_opacity=0.7)
        else:
            mark = drawsvg.Lines(x, y - 5, x + 5, y + 4, x - 5, y + 4, close=True, fill=colour, fill_opacity=0.7)
        mark.append_title(title)
        self.drawing.append(mark)

    def line(self, xy: Sequence[tuple[float, float]], colour: str, dashed: bool = False) -> None:
        points = [c for x, y in xy for c in (self.px(x), self.py(y))]
        self.drawing.append(drawsvg.Lines(*points, fill="none", stroke=colour, stroke_width=1.5,
                                          stroke_dasharray="5,4" if dashed else None))  # fmt: skip

    def legend(self, entries: Sequence[tuple[str, str, str]], right: bool = False) -> None:
        """(label, colour, shape) rows in the top corner, left or right."""
        x = WIDTH - MARGIN - 330 if right else MARGIN + 16
        for i, (label, colour, shape) in enumerate(entries):
            y = MARGIN + 4 + 16 * i
            self.mark(shape, x, y, colour, label, canvas=True)
            self.drawing.append(drawsvg.Text(label, 11, x + 12, y + 4))

    def svg(self) -> str:
        return self.drawing.as_svg()
