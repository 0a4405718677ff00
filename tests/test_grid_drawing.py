"""The shared grid picture (report.html and W&B): the SVG holds exactly the grid, in ARC's palette."""

import re
import xml.etree.ElementTree as ET

from conftest import grids
from hypothesis import given
from hypothesis import strategies as st

from ttt.grid_drawing import PALETTE, differing_cells, grid_svg

SVG = "{http://www.w3.org/2000/svg}"


def cells_drawn(svg: str) -> list[list[int]]:
    """Read the grid back from the picture: background colour 0, then each colour's runs."""
    root = ET.fromstring(svg)
    rows, cols = int(root.get("data-rows")), int(root.get("data-cols"))
    assert root.get("viewBox") == f"0 0 {cols} {rows}"
    background = root.find(f"{SVG}rect")
    assert background.get("fill") == PALETTE[0] and (background.get("width"), background.get("height")) == (str(cols), str(rows))
    grid = [[0] * cols for _ in range(rows)]
    for path in root.findall(f"{SVG}path[@data-colour]"):
        colour = int(path.get("data-colour"))
        assert path.get("fill") == PALETTE[colour]
        for x, y, width in re.findall(r"M(\d+),(\d+) h(\d+) v1 h-\d+ Z", path.get("d")):
            for c in range(int(x), int(x) + int(width)):
                grid[int(y)][c] = colour
    return grid


def test_the_palette_is_arcs_standard_ten_colours():
    assert PALETTE == ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
                       "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")  # fmt: skip


@given(grids())
def test_the_picture_holds_exactly_the_grid(grid):
    svg = grid_svg(grid)
    assert cells_drawn(svg) == [list(row) for row in grid]
    root = ET.fromstring(svg)
    assert max(int(root.get("width")), int(root.get("height"))) <= max(180, 3 * max(len(grid), len(grid[0])))
    assert root.get("data-wrong") == "0" and root.find(f"{SVG}path[@class='diff']") is None


@given(grids(8), st.data())
def test_cells_that_differ_from_the_reference_are_crossed_out(grid, data):
    reference = [list(row) for row in grid]
    changed = data.draw(st.sets(st.tuples(st.integers(0, len(grid) - 1), st.integers(0, len(grid[0]) - 1))))
    for r, c in changed:
        reference[r][c] = (reference[r][c] + 1) % 10
    svg = grid_svg(grid, reference)
    root = ET.fromstring(svg)
    assert root.get("data-wrong") == str(len(changed)) == str(len(differing_cells(grid, reference)))
    crosses = root.findall(f"{SVG}path[@class='diff']")
    if changed:  # one cross per cell, drawn twice (dark under light) and ignored by the pointer
        assert len(crosses) == 2 and all(p.get("pointer-events") == "none" for p in crosses)
        centres = {(float(x) + 0.25, float(y) + 0.25) for x, y in re.findall(r"M([\d.]+),([\d.]+) l0.5,0.5", crosses[0].get("d"))}
        assert centres == {(c + 0.5, r + 0.5) for r, c in changed}
    else:
        assert crosses == []
    assert cells_drawn(svg) == [list(row) for row in grid]  # the crosses never change a cell's colour


def test_a_reference_of_another_shape_marks_nothing_and_no_grid_is_a_placeholder():
    assert differing_cells([[1, 2]], [[1], [2]]) == []
    assert 'data-wrong="0"' in grid_svg([[1, 2]], [[1], [2]])
    assert "no grid" in grid_svg(None) and "no grid" in grid_svg([])
