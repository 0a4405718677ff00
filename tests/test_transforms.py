import random

import pytest
from hypothesis import given, strategies as st

from conftest import grids
from ttt.arc.augmenters import PAPER_AUGMENTERS, REGISTRY, Translate, build_augmenter, build_augmenters
from ttt.arc.task import Example, Task
from ttt.arc.transforms import DIHEDRAL_NAMES, ColourPermutation, Compose, Dihedral, apply_to_task

G = ((1, 2, 3), (4, 5, 6))

EXPECTED_SYMMETRIES = {
    "identity": ((1, 2, 3), (4, 5, 6)),
    "rot90": ((3, 6), (2, 5), (1, 4)),
    "rot180": ((6, 5, 4), (3, 2, 1)),
    "rot270": ((4, 1), (5, 2), (6, 3)),
    "flip_ud": ((4, 5, 6), (1, 2, 3)),
    "flip_lr": ((3, 2, 1), (6, 5, 4)),
    "transpose": ((1, 4), (2, 5), (3, 6)),
    "anti_transpose": ((6, 3), (5, 2), (4, 1)),
}


@pytest.mark.parametrize("name", DIHEDRAL_NAMES)
def test_symmetry_exact_values(name):
    assert Dihedral(name)(G) == EXPECTED_SYMMETRIES[name]


def transforms():
    dihedral = st.sampled_from(DIHEDRAL_NAMES).map(Dihedral)
    colours = st.randoms(use_true_random=False).map(ColourPermutation.random)
    single = st.one_of(dihedral, colours)
    return st.one_of(single, st.lists(single, max_size=4).map(lambda ts: Compose(tuple(ts))))


@given(grids(max_side=12), transforms())
def test_every_invertible_transform_composed_with_its_inverse_is_identity(grid, transform):
    assert transform.inverse()(transform(grid)) == grid
    assert transform(transform.inverse()(grid)) == grid


@given(st.randoms(use_true_random=False))
def test_colour_permutations_fix_background(rng):
    permutation = ColourPermutation.random(rng)
    assert permutation.mapping[0] == 0 and sorted(permutation.mapping) == list(range(10))


def test_colour_permutation_rejects_moving_zero():
    with pytest.raises(ValueError, match="fixing 0"):
        ColourPermutation((1, 0, 2, 3, 4, 5, 6, 7, 8, 9))


def test_compose_applies_left_to_right_and_names_itself():
    t = Compose((Dihedral("rot90"), Dihedral("flip_lr")))
    assert t(G) == Dihedral("flip_lr")(Dihedral("rot90")(G))
    assert t.name == "rot90+flip_lr" and t.inverse().name == "flip_lr+rot270"


def test_apply_to_task_maps_every_grid():
    task = Task("t", (Example(G, G),), (Example(G, None),))
    flipped = apply_to_task(Dihedral("flip_ud"), task)
    assert flipped.train[0] == Example(EXPECTED_SYMMETRIES["flip_ud"], EXPECTED_SYMMETRIES["flip_ud"])
    assert flipped.test[0].output is None


SQUARE = ((1, 2), (3, 4))
EXPECTED_AUGMENTED = {
    "reflect_right": ((1, 2, 2, 1), (3, 4, 4, 3)),
    "reflect_left": ((2, 1, 1, 2), (4, 3, 3, 4)),
    "reflect_down": ((1, 2), (3, 4), (3, 4), (1, 2)),
    "reflect_up": ((3, 4), (1, 2), (1, 2), (3, 4)),
    "upscale2": ((1, 1, 2, 2), (1, 1, 2, 2), (3, 3, 4, 4), (3, 3, 4, 4)),
    "upscale_height2": ((1, 2), (1, 2), (3, 4), (3, 4)),
    "upscale_width2": ((1, 1, 2, 2), (3, 3, 4, 4)),
    "tile_down2": ((1, 2), (3, 4), (1, 2), (3, 4)),
    "tile_right2": ((1, 2, 1, 2), (3, 4, 3, 4)),
    "tile_both2": ((1, 2, 1, 2), (3, 4, 3, 4), (1, 2, 1, 2), (3, 4, 3, 4)),
    "rot90+upscale2": ((2, 2, 4, 4), (2, 2, 4, 4), (1, 1, 3, 3), (1, 1, 3, 3)),
    "transpose+upscale2": ((1, 1, 3, 3), (1, 1, 3, 3), (2, 2, 4, 4), (2, 2, 4, 4)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_AUGMENTED))
def test_augmenter_exact_values_on_every_grid(name):
    task = (Example(SQUARE, SQUARE), Example(SQUARE, SQUARE))
    augmented = build_augmenter(name)(task, random.Random(0))
    assert all(e.input == e.output == EXPECTED_AUGMENTED[name] for e in augmented)


def test_the_paper_list_has_23_registered_augmenters():
    assert len(PAPER_AUGMENTERS) == len(set(PAPER_AUGMENTERS)) == 23
    assert [a.name for a in build_augmenters(PAPER_AUGMENTERS)] == list(PAPER_AUGMENTERS)


def test_unknown_augmenter_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown augmenter 'spin' in 'rot90\\+spin'.*reflect_left"):
        build_augmenter("rot90+spin")


def test_translate_rolls_all_grids_by_one_seeded_shift_of_1_to_3():
    grid = tuple(tuple(range(r * 10, r * 10 + 5)) for r in range(5))
    task = (Example(grid, grid), Example(grid, grid))
    first = Translate()(task, random.Random(7))
    assert first == Translate()(task, random.Random(7))
    shifted = first[0].input
    (dy,) = [r for r in range(5) if shifted[r][0] // 10 == 0]  # where row 0 went
    (dx,) = [c for c in range(5) if shifted[dy][c] == 0]  # where column 0 went
    assert 1 <= dy <= 3 and 1 <= dx <= 3
    assert all(e.input == e.output == shifted for e in first)


def test_registry_holds_the_single_steps():
    assert {"rot90", "translate", "tile_both2", "reflect_up"} <= set(REGISTRY)
