"""The paper's TTT data rule (`ttt.data_rule=paper`): what the reference code (ekinakyurek/marc,
`ttt/preprocess.py`) trains on, re-implemented here for parity.

How it differs from this project's rule (`ttt.data.synthetic_tasks`):
- Leave-one-out samples and leave-two-out samples are built separately. If no leave-one-out sample
  fits, every leave-two-out sample is used, with no cap (a reference quirk); if fewer than the cap
  fit, leave-two-out samples fill up to it; if more, a random draw of the cap. A task with 2
  demonstrations is also topped up: its leave-two-out samples have no demonstration at all.
- Duplicates are removed before the colour-permuted copies are made (so a duplicate does not get
  a copy of its own), and once more after.
- A colour permutation keeps 0 and sends each used colour to an unused one while there are any,
  then swaps used colours among themselves (the reference's `PermuteColors`); the copy's
  demonstrations are shuffled.
- `translate` rolls each grid by shifts of 0-3 rows and columns (at most the grid's size less 1);
  every example draws from its own copy of the same random state, so all inputs share one shift
  and all outputs another (a reference accident: the project's `translate` moves a task's inputs
  and outputs alike).
- Randomness comes from a numpy `RandomState(seed)`, re-made for each step as the reference does,
  so every task sees the same random stream (the project seeds by task id).
The reference iterates Python sets, whose order changes from run to run; here the order is
first-seen, and the leave-two-out top-up is a random draw. Counts match; which samples get which
colours cannot match the reference, whose own runs differ from each other.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np

from ttt.arc.augmenters import build_augmenters
from ttt.arc.grid import Grid, fits, from_array, to_array
from ttt.arc.task import Example, Task
from ttt.arc.transforms import ColourPermutation
from ttt.data.synthetic_tasks import SyntheticTask, TTTDataConfig, dedupe, leave_one_out, leave_two_out


def reference_translate(examples: Sequence[Example], rng: np.random.RandomState) -> tuple[Example, ...]:
    """Roll each input by one drawn shift and each output by the next, every example drawing from
    its own copy of `rng` (which is left as it was)."""

    def roll(grid: Grid, state: np.random.RandomState) -> Grid:
        array = to_array(grid)
        shift = (state.randint(0, min(4, array.shape[0])), state.randint(0, min(4, array.shape[1])))
        return from_array(np.roll(array, shift, axis=(0, 1)))

    result = []
    for example in examples:
        state = copy.deepcopy(rng)
        result.append(Example(roll(example.input, state), roll(example.output, state)))
    return tuple(result)


def reference_colours(sample: SyntheticTask, rng: np.random.RandomState) -> ColourPermutation:
    """The reference's colour map for a sample: 0 fixed; used colours (ascending) go to unused
    ones, drawn in shuffled order, while any are left, then swap with a drawn used colour."""
    grids = [g for e in (*sample.demonstrations, sample.test) for g in (e.input, e.output)]
    used = sorted({c for g in grids for row in g for c in row} - {0})
    unused = sorted(set(range(1, 10)) - set(used))
    rng.shuffle(unused)
    swaps = rng.permutation(used).tolist()
    mapping = {0: 0}
    for colour in used:
        if colour in mapping:
            continue
        if unused:
            target = unused.pop()
        else:
            target = swaps.pop()
            mapping[target] = colour
            if colour in swaps:
                swaps.remove(colour)
        mapping[colour] = target
    # Colours the sample does not use take the targets left over (the reference leaves them be,
    # which is no permutation; they are in no grid, so the grids are the same).
    free = iter(sorted(set(range(10)) - set(mapping.values())))
    return ColourPermutation(tuple(mapping[c] if c in mapping else next(free) for c in range(10)))


def _recoloured(sample: SyntheticTask, rng: np.random.RandomState) -> SyntheticTask:
    colours = reference_colours(sample, rng)
    order = rng.permutation(len(sample.demonstrations))
    demos = tuple(sample.demonstrations[i].map(colours) for i in order)
    return SyntheticTask(demos, sample.test.map(colours), sample.augmenter + "+colours")


def _samples(
    task: Task, n: int, augmenters: Sequence[str], permute_colours: bool, seed: int, keep: Callable[[SyntheticTask], bool]
) -> list[SyntheticTask]:
    """Leave-n-out samples (n = 1 or 2; with 2 demonstrations leave-two-out leaves none) under
    every augmenter, deduplicated, with a colour-permuted copy of each, deduplicated again, then
    filtered by `keep`."""
    rng = np.random.RandomState(seed)
    initial = (leave_one_out if n == 1 else leave_two_out)(task.train)
    augmented = []
    for augmenter in build_augmenters(augmenters):
        for sample in initial:
            examples = (*sample.demonstrations, sample.test)
            if augmenter.name == "translate":
                examples = reference_translate(examples, rng)
            else:
                examples = augmenter(examples, None)  # type: ignore[arg-type]  # deterministic
            if all(fits(e.input) and fits(e.output) for e in examples):
                augmented.append(SyntheticTask(examples[:-1], examples[-1], augmenter.name))
    samples = dedupe(augmented + initial)
    if permute_colours and augmenters:
        samples = dedupe([_recoloured(s, rng) for s in samples] + samples)
    return [s for s in samples if keep(s)]


def build_paper_ttt_tasks(
    task: Task, config: TTTDataConfig, keep: Callable[[SyntheticTask], bool] = lambda _: True, length=None
) -> list[SyntheticTask]:
    """A task's TTT samples as the reference makes them (module docstring) from `config`'s
    augmenters, cap, colour copies and seed; `keep` is the length filter (the reference keeps
    samples under 8192 tokens). `length` is unused: the paper's rule has no token budget."""
    max_examples = config.max_examples
    leave_one = _samples(task, 1, config.augmenters, config.permute_colours, config.seed, keep)
    rng = np.random.RandomState(config.seed)
    if not leave_one:  # every leave-two-out sample, uncapped (reference quirk)
        return _samples(task, 2, config.augmenters, config.permute_colours, config.seed, keep)
    if len(leave_one) < max_examples:
        # (the reference builds these always; they are needed only here)
        leave_two = _samples(task, 2, config.augmenters, config.permute_colours, config.seed, keep)
        rng.shuffle(leave_two)  # the reference takes them in its set's (arbitrary) order
        return leave_one + leave_two[: max_examples - len(leave_one)]
    if len(leave_one) > max_examples:
        rng.shuffle(leave_one)
    return leave_one[:max_examples]
