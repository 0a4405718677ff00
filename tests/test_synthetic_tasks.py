import random
from collections import Counter

import pytest

from ttt.arc.grid import shape
from ttt.arc.task import Example, Task
from ttt.data.synthetic_tasks import (
    SyntheticTask,
    TTTDataConfig,
    augment,
    build_ttt_tasks,
    dedupe,
    direct,
    leave_one_out,
    leave_two_out,
    with_permuted_copies,
)
from ttt.arc.augmenters import build_augmenters


def random_task(task_id: str, k: int, side: int = 3, seed: int = 0) -> Task:
    rng = random.Random(seed)

    def grid():
        return tuple(tuple(rng.randint(1, 9) for _ in range(side + 1)) for _ in range(side))

    return Task(task_id, tuple(Example(grid(), grid()) for _ in range(k)), (Example(grid(), grid()),))


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_leave_one_out_and_leave_two_out_counts(k):
    demos = random_task("t", k).train
    one, two = leave_one_out(demos), leave_two_out(demos)
    assert len(one) == k and all(len(t.demonstrations) == k - 1 for t in one)
    assert [t.test for t in one] == list(demos)
    assert all(t.test not in t.demonstrations for t in one)
    assert len(two) == k * (k - 1) and all(len(t.demonstrations) == k - 2 for t in two)
    assert Counter(t.test for t in two) == {d: k - 1 for d in demos}
    assert len(set(two)) == k * (k - 1)


def test_leave_one_out_keeps_the_demonstration_order():
    a, b, c = random_task("t", 3).train
    assert leave_one_out((a, b, c))[1] == SyntheticTask((a, c), b)


def test_direct_tasks_have_no_context():
    demos = random_task("t", 4).train
    assert direct(demos) == [SyntheticTask((), d) for d in demos]


def test_augment_keeps_the_original_and_drops_grids_over_30():
    big = tuple(tuple([1] * 20) for _ in range(20))
    task = SyntheticTask((Example(big, big),), Example(big, big))
    augmented = augment([task], build_augmenters(["rot90", "upscale2", "tile_right2"]), random.Random(0))
    assert [t.augmenter for t in augmented] == ["none", "rot90"]
    assert augmented[0] == task


def test_permuted_copy_fixes_zero_and_shuffles_demonstrations():
    # demonstration d is d cells wide, so its width tells where it came from whatever its colours
    demos = tuple(Example(((0,) + (d,) * d,), ((d,) * d,)) for d in range(1, 7))
    task = SyntheticTask(demos, Example(((0, 9),), ((9, 0),)))
    orders = set()
    for seed in range(5):
        original, copy = with_permuted_copies([task], random.Random(seed))
        assert original == task
        widths = [len(d.output[0]) for d in copy.demonstrations]
        assert sorted(widths) == [1, 2, 3, 4, 5, 6]
        orders.add(tuple(widths))
        colours = {len(d.output[0]): d.output[0][0] for d in copy.demonstrations}
        assert sorted(colours.values()) == sorted(set(colours.values())) and 0 not in colours.values()
        for d in copy.demonstrations:
            assert d.input == ((0,) + (colours[len(d.output[0])],) * len(d.output[0]),)  # 0 stays 0
        assert copy.test.input[0][0] == 0 == copy.test.output[0][1]
    assert len(orders) > 1


def test_dedupe_keeps_first_occurrence_order():
    a, b = (SyntheticTask((), Example(((i,),), ((i,),))) for i in range(2))
    assert dedupe([a, b, a, b]) == [a, b]


CONFIG = TTTDataConfig(augmenters=("rot90", "flip_lr"), max_examples=50)


def test_cap_keeps_max_examples_leave_one_out_samples():
    samples = build_ttt_tasks(random_task("t", 4), TTTDataConfig(augmenters=("rot90", "flip_lr"), max_examples=10))
    assert len(samples) == 10 and all(len(s.demonstrations) == 3 for s in samples)


def test_fewer_than_the_cap_are_topped_up_from_leave_two_out():
    samples = build_ttt_tasks(random_task("t", 4), CONFIG)
    # leave-one-out: 4 tasks x (original + 2 augmenters) x (plain + permuted copy) = 24
    assert Counter(len(s.demonstrations) for s in samples) == {3: 24, 2: 26}
    assert len(set(samples)) == 50


def test_no_top_up_past_what_exists():
    samples = build_ttt_tasks(random_task("t", 3), TTTDataConfig(augmenters=(), max_examples=250))
    # 3 leave-one-out + 6 leave-two-out, each with its permuted copy
    assert Counter(len(s.demonstrations) for s in samples) == {2: 6, 1: 12}


def test_duplicates_collapse():
    zeros = ((0, 0), (0, 0))
    task = Task("z", (Example(zeros, zeros), Example(zeros, zeros)), ())
    config = TTTDataConfig(augmenters=("rot90", "rot180", "flip_lr", "transpose"))
    assert build_ttt_tasks(task, config) == [SyntheticTask((Example(zeros, zeros),), Example(zeros, zeros))]


def test_keep_filters_before_the_cap():
    task = random_task("t", 4)
    samples = build_ttt_tasks(task, CONFIG, keep=lambda s: len(s.demonstrations) != 3)
    assert len(samples) == 50 and all(len(s.demonstrations) == 2 for s in samples)


def test_direct_mode_has_no_context_and_no_top_up():
    samples = build_ttt_tasks(random_task("t", 4), TTTDataConfig(augmenters=("rot90",), mode="direct"))
    assert len(samples) == 4 * 2 * 2 and all(s.demonstrations == () for s in samples)


def test_same_seed_same_data_whatever_ran_before():
    a, b = random_task("a", 5, seed=1), random_task("b", 5, seed=2)
    first = build_ttt_tasks(a)
    build_ttt_tasks(b)
    random.seed(123)  # global random state must not matter either
    assert build_ttt_tasks(a) == first
    assert len(first) == 250
    assert build_ttt_tasks(a, TTTDataConfig(seed=1)) != first


def test_every_sample_grid_fits_arc_limits():
    samples = build_ttt_tasks(random_task("t", 4, side=12))
    assert all(
        max(shape(g)) <= 30
        for s in samples
        for e in (*s.demonstrations, s.test)
        for g in (e.input, e.output)
    )


def cells(sample: SyntheticTask) -> int:
    """A stand-in for a sample's tokens: its cells."""
    return sum(len(g) * len(g[0]) for e in (*sample.demonstrations, sample.test) for g in (e.input, e.output))


def test_a_token_budget_bounds_the_samples_tokens_and_takes_shorter_ones_when_full_ones_do_not_fit():
    task = random_task("t", 4)  # every grid 3x4: a leave-one-out sample has 96 cells, leave-two-out 72
    config = TTTDataConfig(augmenters=("rot90", "flip_lr"), max_examples=50, max_tokens=1000)
    samples = build_ttt_tasks(task, config, length=cells)
    assert sum(map(cells, samples)) <= 1000
    assert Counter(len(s.demonstrations) for s in samples) == {3: 10}  # 10 x 96 = 960 of 1000
    # 40 left over: no 72-cell leave-two-out sample fits; with 1040, 80 are left and one does
    wider = build_ttt_tasks(task, TTTDataConfig(("rot90", "flip_lr"), 50, max_tokens=1040), length=cells)
    assert Counter(len(s.demonstrations) for s in wider) == {3: 10, 2: 1}
    # a sample over what is left is passed over for a later, shorter one: with one 240-cell
    # demonstration every leave-one-out sample has 312 cells; after one, 88 are left, which no other
    # leave-one-out sample and no leave-two-out sample holding the big one (264) fits, but one
    # leave-two-out sample without it (72) does
    mixed = Task("m", (*task.train[:3], Example(((1,) * 12,) * 10, ((2,) * 12,) * 10)), task.test)
    picked = build_ttt_tasks(mixed, TTTDataConfig((), 50, permute_colours=False, max_tokens=400), length=cells)
    assert sorted(map(cells, picked)) == [72, 312]


def test_without_a_binding_budget_the_data_is_what_the_sample_cap_alone_gives():
    task = random_task("t", 4)
    plain = build_ttt_tasks(task, CONFIG)
    assert build_ttt_tasks(task, TTTDataConfig(CONFIG.augmenters, CONFIG.max_examples, max_tokens=10**6), length=cells) == plain
    capped = TTTDataConfig(CONFIG.augmenters, max_examples=10)
    assert build_ttt_tasks(task, TTTDataConfig(CONFIG.augmenters, 10, max_tokens=10**6), length=cells) == build_ttt_tasks(task, capped)


def test_a_budget_draws_at_random_and_keeps_priority_augmenters_first():
    task = random_task("t", 4)
    config = TTTDataConfig(("rot90", "flip_lr", "transpose"), 50, max_tokens=960, priority=("none", "rot90"))
    samples = build_ttt_tasks(task, config, length=cells)
    assert len(samples) == 10 and all(s.augmenter.removesuffix("+colours") in ("none", "rot90") for s in samples)
    other_seed = build_ttt_tasks(task, TTTDataConfig(**{**vars(config), "seed": 1}), length=cells)
    assert other_seed != samples
